"""What every dashboard shares: the provisioned datasources, query builders, panel helpers.

Datasource uids are pinned in grafana/provisioning/datasources/datasources.yml; every panel
names one of them, so file provisioning loads the JSON as it is on first start (no datasource
inputs to fill in, as exported dashboards have).
"""

import json
import warnings
from typing import Any, Self

with warnings.catch_warnings():
    # The SDK marks the classic dashboard model as deprecated in favour of v2, which file
    # provisioning of the Grafana versions we run does not load.
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import prometheus as prom_builders
    from grafana_foundation_sdk.builders import stat as stat_builders
    from grafana_foundation_sdk.builders import timeseries as ts_builders
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import runtime as cogruntime
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models import dashboard as dashboard_models
    from grafana_foundation_sdk.models import prometheus as prom_models

PROMETHEUS_UID = "prometheus"
POSTGRES_UID = "sessionhub-postgres"
POSTGRES_TYPE = "grafana-postgresql-datasource"

PROMETHEUS = common_models.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
POSTGRES = common_models.DataSourceRef(type_val=POSTGRES_TYPE, uid=POSTGRES_UID)

TAGS = ["sessionhub"]


# --- PostgreSQL queries (the SDK has no builder for them) ---------------------------------------


class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL target of Grafana's PostgreSQL datasource."""

    def __init__(self, raw_sql: str = "", ref_id: str = "A", format_val: str = "table") -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format_val = format_val

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "rawSql": self.raw_sql,
            "format": self.format_val,
            "rawQuery": True,
            "editorMode": "code",
            "datasource": POSTGRES,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(data.get("rawSql", ""), data.get("refId", "A"), data.get("format", "table"))


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlQuery(raw_sql.strip())

    def build(self) -> SqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def time_series(self) -> Self:
        self._internal.format_val = "time_series"
        return self


# Loading a dashboard back (Dashboard.from_json) turns PostgreSQL targets into SqlQuery.
cogruntime.register_dataquery_variant(
    cogruntime.DataqueryConfig(identifier=POSTGRES_TYPE, from_json_hook=SqlQuery.from_json)
)


def sql(raw_sql: str, ref_id: str = "A") -> Sql:
    return Sql(raw_sql).ref_id(ref_id)


def sql_series(raw_sql: str, ref_id: str = "A") -> Sql:
    """A query whose rows are (time, value columns...) or (time, metric, value)."""
    return Sql(raw_sql).ref_id(ref_id).time_series()


# --- Prometheus queries --------------------------------------------------------------------------


def prom(
    expr: str, legend: str = "", ref_id: str = "A", instant: bool = False, fmt: str = ""
) -> prom_builders.Dataquery:
    query = (
        prom_builders.Dataquery()
        .datasource(PROMETHEUS)
        .expr(expr)
        .ref_id(ref_id)
        .editor_mode(prom_models.QueryEditorMode.CODE)
    )
    query = query.instant() if instant else query.range()
    if legend:
        query = query.legend_format(legend)
    if fmt:
        query = query.format(prom_models.PromQueryFormat(fmt))
    return query


# --- Panels --------------------------------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


GREEN = thresholds((None, "green"))


def reduce_last(fields: str = "") -> common_builders.ReduceDataOptions:
    options = common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    return options.fields(fields) if fields else options


def legend(*calcs: str, table: bool = False) -> common_builders.VizLegendOptions:
    options = (
        common_builders.VizLegendOptions()
        .show_legend(True)
        .placement(common_models.LegendPlacement.BOTTOM)
        .display_mode(
            common_models.LegendDisplayMode.TABLE if table else common_models.LegendDisplayMode.LIST
        )
    )
    return options.calcs(list(calcs)) if calcs else options


def place(panel, width: int, height: int, datasource, description: str):
    return panel.span(width).height(height).datasource(datasource).description(description)


def stat_panel(title: str, expr: str, description: str, unit: str = "short", steps=None):
    """A 4x4 stat of one instant Prometheus query."""
    return (
        place(stat_builders.Panel().title(title), 4, 4, PROMETHEUS, description)
        .with_target(prom(expr, instant=True))
        .reduce_options(reduce_last())
        .unit(unit)
        .thresholds(thresholds(*(steps or [(None, "green")])))
    )


def series_panel(title: str, description: str, *targets, unit: str = "short", width: int = 12):
    """A time series of Prometheus range queries, with a legend table."""
    panel = place(ts_builders.Panel().title(title), width, 8, PROMETHEUS, description)
    for target in targets:
        panel = panel.with_target(target)
    return panel.unit(unit).min(0).legend(legend("mean", "max", "lastNotNull", table=True))


def organize(exclude: list[str], rename: dict[str, str] | None = None):
    return dashboard_models.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": dict.fromkeys(exclude, True), "renameByName": rename or {}},
    )


def up_down() -> list[dashboard_models.ValueMap]:
    """0/1 shown as down/up."""
    return [
        dashboard_models.ValueMap(
            options={
                "0": dashboard_models.ValueMappingResult(text="down", color="red"),
                "1": dashboard_models.ValueMappingResult(text="up", color="green"),
            }
        )
    ]


def row(title: str) -> dash.Row:
    return dash.Row(title)


# --- Variables -----------------------------------------------------------------------------------


def option(value: str, text: str = "", selected: bool = False) -> dashboard_models.VariableOption:
    return dashboard_models.VariableOption(selected=selected, text=text or value, value=value)


def custom_variable(name: str, label: str, values: list[str], default: str) -> dash.CustomVariable:
    return (
        dash.CustomVariable(name)
        .label(label)
        .values(",".join(values))
        .allow_custom_value(False)
        .current(option(default, selected=True))
        .options([option(value, selected=value == default) for value in values])
    )


def label_values_variable(
    name: str, label: str, query: str, include_all: bool = False
) -> dash.QueryVariable:
    """A Prometheus `label_values(...)` variable, refreshed when the time range changes."""
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .definition(query)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )
    if include_all:
        variable = (
            variable.include_all(True)
            .multi(True)
            .all_value(".*")
            .current(option("$__all", text="All", selected=True))
        )
    return variable


# --- Dashboards ----------------------------------------------------------------------------------


def dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("30s")
        .readonly()
        .annotations([])  # Grafana adds its built-in annotations query to an empty list
        .variables([])
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("sessionhub dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )


def finish(builder: dash.Dashboard) -> dashboard_models.Dashboard:
    """Build the model and number the panels (rows included) in reading order."""
    model = builder.build()
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for inner in getattr(panel, "panels", None) or []:
            inner.id_val = next_id
            next_id += 1
    return model


def to_json(model: dashboard_models.Dashboard) -> str:
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
