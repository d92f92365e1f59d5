"""The demo workload is plausible and feeds every report: checked on a real replay.

Through the real stack (PostgreSQL, Redis, the sync and the rollups), a small demo: 40 people
and the two service accounts over 14 days.
"""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

from accounts.events import EndReason
from analytics import selectors
from reports import demo

pytestmark = pytest.mark.django_db

USERS, DAYS = 40, 14


def rows(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def test_the_demo_is_plausible_and_feeds_every_report():
    """One replay (a minute), checked four ways."""
    seeded = demo.demo_seed(users=USERS, days=DAYS, seed=7)
    every_account_joins_before_it_acts()
    every_end_reason_occurs()
    idle_and_never_active_users_are_old_enough()
    every_report_and_chart_has_data(seeded)


def every_account_joins_before_it_acts():
    early = rows(
        """
        SELECT u.username, u.date_joined, first.at
        FROM accounts_user u
        JOIN (SELECT user_id, min(at) AS at FROM (
                SELECT user_id, started_at AS at FROM audit_session
                UNION ALL
                SELECT user_id, occurred_at FROM audit_event WHERE user_id IS NOT NULL
              ) activity GROUP BY user_id) first ON first.user_id = u.id
        WHERE u.date_joined > first.at
        """
    )
    assert early == []
    # Some joined during the period, and acted only afterwards (checked above).
    [(joined_during,)] = rows(
        "SELECT count(*) FROM accounts_user WHERE date_joined > now() - make_interval(days => %s)",
        [DAYS],
    )
    assert joined_during >= 1


def every_end_reason_occurs():
    reasons = {reason for (reason,) in rows("SELECT DISTINCT end_reason FROM audit_session")}
    # All but `lost`: that one takes Redis losing its data, which the demo does not stage.
    expected = set(EndReason.values) - {EndReason.LOST}
    assert expected <= reasons, expected - reasons


def idle_and_never_active_users_are_old_enough():
    idle = rows("SELECT never_active, idle_days FROM analytics_idle_users")
    assert any(never for never, _ in idle) and any(not never for never, _ in idle)
    # Never-active accounts joined more than a week ago: rightly idle, not brand new.
    [(fresh,)] = rows(
        "SELECT count(*) FROM analytics_idle_users "
        "WHERE never_active AND date_joined > now() - interval '7 days'"
    )
    assert fresh == 0


def every_report_and_chart_has_data(seeded):
    overview = selectors.overview()
    assert len(overview.daily) >= DAYS and overview.daily[-1].dau > 0
    assert sum(n for _, n in overview.durations) > 0
    assert sum(n for _, n in overview.failed_by_hour) > 0
    assert overview.live.active_now > 0
    power = rows(
        "SELECT username, api_calls FROM analytics_power_users WHERE \"window\" = '7d' "
        "ORDER BY api_calls DESC LIMIT 3"
    )
    assert len(power) == 3 and power[0][1] > 3 * power[2][1] > 0  # a power user stands out
    # The credential stuffer of the last day tops the suspicious IPs, with its three agents.
    stuffer, guesser = selectors.suspicious_ips(hours=24)
    assert stuffer.ip == "203.0.113.12" and stuffer.user_agent_count == 3
    assert stuffer.usernames_tried >= 20
    assert guesser.ip == "203.0.113.50" and guesser.usernames_tried == 1, guesser
    # The range switch shows the week's stuffer too.
    week = selectors.suspicious_ips(hours=168)
    assert {row.ip for row in week[:2]} == {"203.0.113.11", "203.0.113.12"}
    events = {name for (name,) in rows("SELECT DISTINCT event_type FROM audit_event")}
    assert {"locked_out", "session_anomaly", "refresh_token_reused", "login_failed"} <= events
    # The guessed account shows its failed logins on its page.
    victim = next(i for i in seeded.incidents if i.startswith("password guessing against "))
    failures = selectors.account_failures(username=victim.rsplit(" ", 1)[1])
    assert failures.last_24h >= 5


def test_the_command_reports_what_it_replayed(capsys):
    call_command("seed_demo", users=12, days=5, seed=2)
    out = capsys.readouterr().out
    assert "==> Demo data: 14 users" in out and "incidents:" in out
    assert get_user_model().objects.filter(username="partner-sync").exists()
