"""URLs of the example site: one function view, one class-based view, one async view."""

from django.urls import path
from lockdemo import views

urlpatterns = [
    path("orders/<int:order_id>/pay", views.pay_order, name="pay-order"),
    path("reports/<slug:kind>/rebuild", views.RebuildReportView.as_view(), name="rebuild-report"),
    path("feeds/<int:feed_id>/refresh", views.refresh_feed, name="refresh-feed"),
]
