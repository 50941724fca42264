"""URLs of the example site: one function view, one class-based view, one async view, and
the admin (with redsync's "Distributed locks" page)."""

from django.contrib import admin
from django.urls import path
from lockdemo import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("orders/<int:order_id>/pay", views.pay_order, name="pay-order"),
    path("reports/<slug:kind>/rebuild", views.RebuildReportView.as_view(), name="rebuild-report"),
    path("feeds/<int:feed_id>/refresh", views.refresh_feed, name="refresh-feed"),
]
