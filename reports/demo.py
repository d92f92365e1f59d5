"""A realistic demo workload, replayed through the real code paths on a simulated clock.

Thirty days (by default) of logins, API calls, logouts, abandoned sessions, typos and
credential-stuffing bursts go through `accounts.services.login`, the tracker that the DRF
authentication calls, `logout`, the expiry job and the audit sync — exactly what production
traffic does — with `core.clock` moved along instead of waiting. Reproducible: the same
`--seed` gives the same workload.

Profiles: power users (many long sessions, heavy calls), regular, occasional, idle (active only
at the start of the period) and never-active accounts. Logins follow a daily rhythm peaking in
office hours (UTC).
"""

import heapq
import itertools
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test import override_settings

from accounts import services as account_services
from accounts.tracking import Verdict, tracker
from analytics import services as analytics_services
from audit import services as audit_services
from core import clock

DAY = 86400
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 6, 9, 10, 10, 9, 7, 8, 10, 10, 9, 7, 5, 4, 3, 2, 2, 1]
FIRST_NAMES = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "barbara",
    "dennis",
    "frances",
    "john",
    "radia",
    "tim",
    "hedy",
    "edsger",
    "donald",
    "sophie",
    "guido",
    "anita",
    "bjarne",
    "katherine",
    "niklaus",
    "lynn",
    "ward",
    "shafi",
]
USER_AGENTS = [
    "sessionhub-demo-ios/3.2",
    "sessionhub-demo-android/3.1",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "python-httpx/0.28",
]
ATTACKER_AGENT = "python-requests/2.31.0"


@dataclass
class Profile:
    name: str
    share: float
    sessions_per_day: tuple[int, int]
    day_probability: float
    bursts: tuple[int, int]
    calls_per_burst: tuple[int, int]


PROFILES = [
    Profile("power", 0.05, (2, 5), 0.95, (6, 20), (20, 200)),
    Profile("regular", 0.50, (1, 2), 0.6, (2, 8), (1, 30)),
    Profile("occasional", 0.15, (1, 1), 0.15, (1, 4), (1, 10)),
    Profile("idle", 0.20, (1, 1), 0.35, (1, 3), (1, 10)),
    Profile("never", 0.10, (0, 0), 0.0, (0, 0), (0, 0)),
]


@dataclass
class DemoResult:
    users: int = 0
    sessions: int = 0
    calls: int = 0
    failed_logins: int = 0
    profiles: dict[str, int] = field(default_factory=dict)


def _profile_for(index: int, total: int) -> Profile:
    bound = 0.0
    for profile in PROFILES:
        bound += profile.share
        if index < round(bound * total):
            return profile
    return PROFILES[-1]


def _create_users(count: int, rng: random.Random, password: str) -> list[tuple]:
    user_model = get_user_model()
    users = []
    encoded = make_password(password)
    for n in range(count):
        username = f"{rng.choice(FIRST_NAMES)}.{n:04d}"
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@demo.invalid", "password": encoded}
        )
        users.append(
            (
                user,
                _profile_for(n, count),
                rng.choice(USER_AGENTS),
                f"198.51.100.{rng.randrange(1, 250)}",
            )
        )
    return users


def _plan(users, days: int, end: float, rng: random.Random, counter) -> list[tuple]:
    """A heap of (time, seq, action, args) for the whole period."""
    start = end - days * DAY
    actions: list[tuple] = []
    day_start = start - start % DAY
    for day in range(days + 1):
        base = day_start + day * DAY
        for user, profile, agent, ip in users:
            if profile.name == "idle" and day > days - 10:
                continue  # idle users stopped coming more than a week ago
            if profile.day_probability == 0 or rng.random() > profile.day_probability:
                continue
            for _ in range(rng.randint(*profile.sessions_per_day)):
                hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
                at = base + hour * 3600 + rng.randrange(3600)
                if not start <= at < end:
                    continue
                if profile.name == "regular" and rng.random() < 0.05:  # a typo first
                    actions.append((at - 20, next(counter), "fail", (user.username, ip, agent)))
                session = {"user": user, "ip": ip, "agent": agent, "tokens": None}
                actions.append((at, next(counter), "login", (session,)))
                t = at
                for _ in range(rng.randint(*profile.bursts)):
                    t += rng.randrange(30, 20 * 60)
                    if t >= end:
                        break
                    calls = rng.randint(*profile.calls_per_burst)
                    actions.append((t, next(counter), "calls", (session, calls)))
                if rng.random() < 0.5 and t + 60 < end:
                    actions.append((t + 60, next(counter), "logout", (session,)))
    # Credential stuffing: a few IPs trying many usernames, the last one within the day.
    real_names = [user.username for user, *_ in users]
    for n, offset in enumerate((days * 0.6, days * 0.25, 0.2)):
        at = end - offset * DAY
        ip = f"203.0.113.{10 + n}"
        names = rng.sample(real_names, min(15, len(real_names))) + [
            f"{rng.choice(FIRST_NAMES)}{rng.randrange(100)}" for _ in range(25)
        ]
        for i, name in enumerate(names):
            actions.append((at + i * 2, next(counter), "fail", (name, ip, ATTACKER_AGENT)))
    heapq.heapify(actions)
    return actions


def demo_seed(
    *, users: int = 200, days: int = 30, seed: int = 1, progress: Callable | None = None
) -> DemoResult:
    rng = random.Random(seed)
    password = secrets.token_urlsafe(12)
    end = clock.now()
    result = DemoResult()
    counter = itertools.count()
    # Demo accounts are hashed with a fast hasher for the replay and made unusable afterwards:
    # nobody can log in as a demo user, and 30 days of logins take seconds, not hours.
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        people = _create_users(users, rng, password)
        result.users = len(people)
        for _, profile, *_ in people:
            result.profiles[profile.name] = result.profiles.get(profile.name, 0) + 1
        actions = _plan(people, days, end, rng, counter)
        total = len(actions)
        with clock.simulated(end - days * DAY) as simulated:
            next_expiry = simulated.value
            next_sync = simulated.value + DAY
            done = 0
            while actions:
                at, _, action, args = heapq.heappop(actions)
                simulated.value = at
                if at >= next_expiry:
                    tracker.flush()
                    account_services.sessions_expire_due()
                    next_expiry = at + 300
                if at >= next_sync:
                    tracker.flush()
                    audit_services.sync_run()
                    next_sync = at + DAY
                _run(action, args, password, result)
                done += 1
                if progress and (done % 2000 == 0 or not actions):
                    progress(done, total, result)
            simulated.value = end
            tracker.flush()
            account_services.sessions_expire_due()
        get_user_model().objects.filter(pk__in=[u.pk for u, *_ in people]).update(
            password=make_password(None)
        )
    tracker.flush()
    audit_services.sync_run()
    analytics_services.analytics_refresh()
    return result


def _run(action: str, args: tuple, password: str, result: DemoResult) -> None:
    if action == "fail":
        username, ip, agent = args
        try:
            account_services.login(
                username=username, password="wrong-" + password, ip=ip, user_agent=agent
            )
        except (account_services.LoginFailed, account_services.LoginThrottled):
            result.failed_logins += 1
    elif action == "login":
        (session,) = args
        user = session["user"]
        try:
            pair = account_services.login(
                username=user.username,
                password=password,
                ip=session["ip"],
                user_agent=session["agent"],
            )
        except (account_services.LoginFailed, account_services.LoginThrottled):
            return  # locked out by an attacker's burst on the same IP: the user gives up
        session["tokens"] = pair
        session["started"] = int(clock.now())
        result.sessions += 1
    elif action == "calls":
        session, calls = args
        if session["tokens"] is None:
            return
        for _ in range(calls):
            verdict = tracker.authorize(
                sid=session["tokens"].sid,
                user_id=session["user"].pk,
                started_at=session["started"],
                ip=session["ip"],
                user_agent=session["agent"],
            )
            if verdict is Verdict.ENDED:
                session["tokens"] = None  # timed out: the client would log in again later
                return
            result.calls += 1
    elif action == "logout" and session_open(args[0]):
        account_services.logout(raw_refresh=args[0]["tokens"].refresh)
        args[0]["tokens"] = None


def session_open(session: dict) -> bool:
    return session["tokens"] is not None
