"""Admin building blocks shared by the report pages: read-only access, bounded counts, CSV."""

import csv
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib import admin
from django.contrib.admin import SimpleListFilter
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import capfirst

from core.permissions import can_view_reports
from core.replica import REPLICA, read_reports, replica_usable

CSV_ROW_LIMIT = 100_000


def user_link(user_id: int, username: str) -> str:
    """A link to the per-user report page, for every report that names a user."""
    url = reverse("admin:analytics_user_detail", args=[user_id])
    return format_html('<a href="{}">{}</a>', url, username)


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows (`SELECT count(*) FROM (… LIMIT n)`), so a page view never
    counts ten million events; beyond the cap the admin says "10,000+" pages' worth."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        # Unordered: which CAP + 1 rows are counted does not matter, and an ORDER BY would make
        # PostgreSQL sort the whole report before it could stop.
        rows: Any = self.object_list  # a QuerySet: the admin paginates querysets only
        return rows.order_by()[: self.CAP + 1].count()


class IndexOrderedCountPaginator(CappedCountPaginator):
    """CappedCountPaginator for reports whose order is an index's (the kept per-user figures):
    the count keeps the order, so PostgreSQL walks the index for CAP + 1 rows, where an
    unordered count may read every row the report leaves out before finding them."""

    @cached_property
    def count(self) -> int:
        rows: Any = self.object_list
        return rows[: self.CAP + 1].count()


class ReportAdmin(admin.ModelAdmin):
    """A read-only report: needs staff status plus the analytics permission."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    actions = None
    # A report's rows are figures, not records to open: Django's link to a "View …" page of
    # the row is dropped; the columns link where there is more to see (the user's page).
    list_display_links: tuple[str, ...] | None = None

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Reports never write and never read back a write of their own: the replica, if any.
        # Bound here, the queryset keeps its database when the template or a CSV stream
        # evaluates it after the view has returned.
        queryset = super().get_queryset(request)
        return queryset.using(REPLICA) if replica_usable() else queryset

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Django titles a view-only list "Select … to view"; a report has a name.
        context = {"title": capfirst(self.opts.verbose_name_plural), **(extra_context or {})}

        def rendered() -> HttpResponse:
            # Rendered here, where a replica outage can still be answered from the primary.
            response = super(ReportAdmin, self).changelist_view(request, context)
            return response.render() if hasattr(response, "render") else response

        return read_reports(rendered)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return can_view_reports(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class _Echo:
    def write(self, value: str) -> str:
        return value


# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """One cell as text a spreadsheet shows and never evaluates.

    Usernames of failed logins and User-Agents are whatever an anonymous client sent: text
    starting with a formula trigger gets a leading single quote, which spreadsheets take as
    "this is text" (OWASP's advice). Every cell passes here, our own figures included, so no
    export can forget a column; none of those starts with a trigger (no negative figures).
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def csv_response(
    *, filename: str, header: Iterable[str], rows: Iterable[Iterable[object]]
) -> StreamingHttpResponse:
    """The one CSV writer of the admin: streamed, every cell through `csv_cell`."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([csv_cell(value) for value in header])
        for row in rows:
            yield writer.writerow([csv_cell(value) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class CsvExportMixin(admin.ModelAdmin):
    """An "Export CSV" button exporting the changelist as filtered, searched and sorted."""

    csv_fields: tuple[str, ...] = ()
    change_list_template = "admin/analytics/change_list_csv.html"

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_csv),
                name="{}_{}_export_csv".format(*info),
            ),
            *super().get_urls(),
        ]

    def csv_value(self, obj: Model, name: str) -> object:
        value = getattr(obj, name)
        return value() if callable(value) else value

    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied

        def first_chunk_read() -> Iterator[Any]:
            # The first chunk is fetched here, where a replica outage can still be answered
            # from the primary; the rest streams from the same database.
            changelist = self.get_changelist_instance(request)
            objects = changelist.get_queryset(request)[:CSV_ROW_LIMIT].iterator(chunk_size=2000)
            first = next(objects, None)
            return objects if first is None else itertools.chain([first], objects)

        rows = (
            [self.csv_value(obj, name) for name in self.csv_fields]
            for obj in read_reports(first_chunk_read)
        )
        return csv_response(
            filename=f"{self.opts.model_name}.csv", header=self.csv_fields, rows=rows
        )


def fixed_choices_filter(
    field: str, title: str, choices: list[tuple[str, str]]
) -> type[SimpleListFilter]:
    """A list filter with known choices: Django's default would run SELECT DISTINCT over the
    whole column (a full scan of ten million events) on every page view."""

    class FixedChoicesFilter(SimpleListFilter):
        parameter_name = field

        def lookups(
            self, request: HttpRequest, model_admin: admin.ModelAdmin
        ) -> list[tuple[str, str]]:
            return choices

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            if self.value() is None:
                return queryset
            return queryset.filter(**{field: self.value()})

    FixedChoicesFilter.title = title
    return FixedChoicesFilter
