from django.apps import AppConfig


class LockdemoConfig(AppConfig):
    name = "lockdemo"
