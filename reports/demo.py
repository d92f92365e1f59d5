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

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractUser
from django.test import override_settings

from accounts import services as account_services
from accounts.tracking import Verdict, tracker
from analytics import services as analytics_services
from audit import services as audit_services
from core import clock
from core.conf import get_settings

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
    "sessionhub-demo-ios/3.2 (iPhone; iOS 17.5)",
    "sessionhub-demo-android/3.1 (Android 14)",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Safari/605.1.15",
    "python-httpx/0.28",
]
ATTACKER_AGENTS = [
    "python-requests/2.31.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Go-http-client/1.1",
]
GUESSER = ("203.0.113.50", "python-requests/2.31.0")
THIEF = ("203.0.113.200", "Go-http-client/1.1")
SCRIPT_AGENT = "python-httpx/0.28 (nightly-export)"
INTEGRATION_AGENT = "okhttp/4.12.0"


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
    incidents: list[str] = field(default_factory=list)


@dataclass
class Person:
    user: AbstractUser
    profile: Profile
    agent: str
    ip: str
    joined: float = 0.0
    leaves: float | None = None  # disabled then: nothing of theirs is planned after


# Accounts of programs, not people: planned only by the incidents below.
SERVICE = Profile("service", 0.0, (0, 0), 0.0, (0, 0), (0, 0))
SERVICE_ACCOUNTS = (("nightly-export", SCRIPT_AGENT), ("partner-sync", INTEGRATION_AGENT))


def _profile_for(index: int, total: int) -> Profile:
    bound = 0.0
    for profile in PROFILES:
        bound += profile.share
        if index < round(bound * total):
            return profile
    return PROFILES[-1]


def _create_users(count: int, rng: random.Random, password: str) -> list[Person]:
    user_model = get_user_model()
    encoded = make_password(password)
    people = []

    def account(username: str) -> AbstractUser:
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@demo.invalid", "password": encoded}
        )
        return user

    for n in range(count):
        username = f"{rng.choice(FIRST_NAMES)}.{n:04d}"
        # One home address each (documentation space; IPv6 past 250 people): a few people's
        # typos never add up to a "suspicious" address.
        ip = f"198.51.100.{n + 1}" if n < 250 else f"2001:db8:0:{n:x}::10"
        agent = rng.choice(USER_AGENTS)
        people.append(Person(account(username), _profile_for(n, count), agent, ip))
    for n, (username, agent) in enumerate(SERVICE_ACCOUNTS):
        people.append(Person(account(username), SERVICE, agent, f"192.0.2.{250 + n}"))
    return people


def _set_join_times(people: list[Person], days: int, end: float, rng: random.Random) -> None:
    """When each account joined, before anything it does: most before the period, a quarter of
    the regular and occasional users during it (they act only from then on), the never-active
    ones more than a week before its end (so they are rightly idle)."""
    start = end - days * DAY
    for person in people:
        name = person.profile.name
        if name in ("regular", "occasional") and days > 4 and rng.random() < 0.25:
            person.joined = start + rng.uniform(0, (days - 3) * DAY)
        elif name == "never":
            person.joined = end - rng.uniform(8 * DAY, (days + 180) * DAY)
        else:
            person.joined = start - rng.uniform(DAY, 365 * DAY)
    get_user_model().objects.bulk_update(
        [_joined(person) for person in people], ["date_joined"], batch_size=1000
    )


def _joined(person: Person):
    person.user.date_joined = clock.to_datetime(person.joined)
    return person.user


def _session(person: Person, ip: str | None = None, agent: str | None = None) -> dict:
    return {
        "user": person.user,
        "ip": ip or person.ip,
        "agent": agent or person.agent,
        "tokens": None,
    }


def _plan(people: list[Person], days: int, end: float, rng: random.Random, counter) -> list:
    """A heap of (time, seq, action, args) for the whole period."""
    start = end - days * DAY
    actions: list[tuple] = []

    def add(at: float, action: str, *args) -> None:
        actions.append((at, next(counter), action, args))

    day_start = start - start % DAY
    for day in range(days + 1):
        base = day_start + day * DAY
        for person in people:
            profile = person.profile
            if profile.name == "idle" and day > days - 10:
                continue  # idle users stopped coming more than a week ago
            if profile.day_probability == 0 or rng.random() > profile.day_probability:
                continue
            for _ in range(rng.randint(*profile.sessions_per_day)):
                hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
                at = base + hour * 3600 + rng.randrange(3600)
                if not start <= at < end or at - 60 < person.joined:
                    continue
                if person.leaves is not None and at >= person.leaves - 3600:
                    continue
                if profile.name == "regular" and rng.random() < 0.05:  # a typo first
                    add(at - 20, "fail", person.user.username, person.ip, person.agent)
                session = _session(person)
                add(at, "login", session)
                t = at
                for _ in range(rng.randint(*profile.bursts)):
                    t += rng.randrange(30, 20 * 60)
                    if t >= end:
                        break
                    add(t, "calls", session, rng.randint(*profile.calls_per_burst))
                if rng.random() < 0.5 and t + 60 < end:
                    add(t + 60, "logout", session)
    return actions


def _plan_attacks(people, days, end, rng, counter, actions) -> list[str]:
    """Credential stuffing from a few addresses (the last within the day, rotating its user
    agent), and one address guessing one account's password."""
    # Days before the end: one long ago, one within the week, one within the day.
    for n, offset in enumerate((days * 0.6, min(days * 0.15, 5), 0.2)):
        at = end - offset * DAY
        ip = f"203.0.113.{10 + n}"
        known = [p.user.username for p in people if p.joined < at - DAY]
        names = rng.sample(known, min(15, len(known))) + [
            f"{rng.choice(FIRST_NAMES)}{rng.randrange(100)}" for _ in range(25)
        ]
        rotating = n == 2
        for i, name in enumerate(names):
            agent = ATTACKER_AGENTS[i % len(ATTACKER_AGENTS)] if rotating else ATTACKER_AGENTS[0]
            actions.append((at + i * 2, next(counter), "fail", (name, ip, agent)))
    victims = [p for p in people if p.profile.name == "regular" and p.joined < end - 2 * DAY]
    if not victims:
        return ["credential stuffing"]
    victim = victims[-1]
    # Four waves an hour apart: 5 failures lock the pair, the rest of a wave is refused, and
    # each wave after a lock ends starts a longer one.
    for wave in range(4):
        at = end - (8 - wave) * 3600
        for i in range(8):
            name = victim.user.username
            actions.append((at + i * 15, next(counter), "fail", (name, *GUESSER)))
    return ["credential stuffing", f"password guessing against {victim.user.username}"]


def _plan_live_now(people, end, rng, counter, actions) -> None:
    """The power users and a few others are at work when the replay ends: the live sessions,
    the "active now" figures and the per-minute calls have something to show."""
    for person in people:
        name = person.profile.name
        if name == "power" or (name == "regular" and rng.random() < 0.15):
            if person.joined > end - DAY or person.leaves is not None:
                continue
            session = _session(person)
            at = end - rng.uniform(5 * 60, 50 * 60)
            actions.append((at, next(counter), "login", (session,)))
            t = at
            while t < end - 60:
                t += rng.uniform(30, 240)
                calls = rng.randint(*person.profile.calls_per_burst)
                actions.append((min(t, end - 1), next(counter), "calls", (session, calls)))


def _plan_incidents(people, days, end, counter, actions) -> list[str]:
    """One of each way a session ends besides logout and the idle timeout, each at a time and
    for an account where it is plausible."""
    start = end - days * DAY
    veterans = [p for p in people if p.joined < start and p.profile.name in ("power", "regular")]
    power = [p for p in veterans if p.profile.name == "power"]
    regular = [p for p in veterans if p.profile.name == "regular"]
    services = {p.user.username: p for p in people if p.profile is SERVICE}
    done = []

    def add(at: float, action: str, *args) -> None:
        actions.append((at, next(counter), action, args))

    def busy_session(person: Person, at: float, ip=None, agent=None) -> dict:
        session = _session(person, ip, agent)
        add(at, "login", session)
        add(at + 60, "calls", session, 12)
        return session

    if power:
        # A user ends the session of a phone they lost, from their laptop.
        owner, at = power[0], end - 2 * DAY + 10 * 3600
        phone = busy_session(owner, at, agent=USER_AGENTS[0])
        laptop = busy_session(owner, at + 900, agent=USER_AGENTS[3])
        add(at + 1800, "revoke_own", laptop, phone)
        # A token copied to another network and client, used within minutes of its owner.
        victim, at = power[1 % len(power)], end - DAY - 5 * 3600
        add(at + 240, "steal", busy_session(victim, at))
        done += ["a session revoked by its user", "a stolen token"]
    if len(regular) >= 3:
        changer, leaver, reuser = regular[0], regular[1], regular[2]
        at = end - 4 * DAY + 14 * 3600
        busy_session(changer, at)
        add(at + 600, "change_password", changer)
        leaver.leaves = end - 3 * DAY + 11 * 3600
        busy_session(leaver, leaver.leaves - 1800)
        add(leaver.leaves, "disable", leaver)
        at = end - 5 * 3600
        add(at + 300, "refresh_reuse", busy_session(reuser, at))
        done += ["a password change", "an account disabled", "a refresh token reused"]
    limit = get_settings().SESSION_LIMIT_PER_USER
    script = services.get("nightly-export")
    if script and limit:
        # Logs in for every job and never logs out: the cap ends its oldest session.
        at = end - 2 * DAY + 2 * 3600
        for i in range(limit + 1):
            session = _session(script)
            add(at + i * 20, "login", session)
            add(at + i * 20 + 5, "calls", session, 3)
        done.append("a script past its session cap")
    partner = services.get("partner-sync")
    if partner:
        # Polls every 20 minutes around the clock: its session reaches the absolute timeout
        # and it logs in again.
        at = end - 6 * DAY + 3600
        first = _session(partner)
        add(at, "login", first)
        second = _session(partner)
        add(at + get_settings().ABSOLUTE_TIMEOUT + 600, "login", second)
        for i in range(1, 54):
            t = at + i * 1200
            session = first if t < at + get_settings().ABSOLUTE_TIMEOUT else second
            add(t, "calls", session, 5)
        done.append("an integration past the absolute timeout")
    return done


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
        for person in people:
            name = person.profile.name
            result.profiles[name] = result.profiles.get(name, 0) + 1
        _set_join_times(people, days, end, rng)
        incidents: list[tuple] = []
        result.incidents = _plan_incidents(people, days, end, counter, incidents)
        actions = _plan(people, days, end, rng, counter) + incidents
        _plan_live_now(people, end, rng, counter, actions)
        result.incidents = _plan_attacks(people, days, end, rng, counter, actions) + (
            result.incidents
        )
        heapq.heapify(actions)
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
        get_user_model().objects.filter(pk__in=[p.user.pk for p in people]).update(
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
            return  # locked out by an attacker's burst, or disabled: the user gives up
        session["tokens"] = pair
        session["started"] = int(clock.now())
        result.sessions += 1
    elif action == "calls":
        session, calls = args
        for _ in range(calls):
            if not _call(session, session["ip"], session["agent"]):
                return
            result.calls += 1
    elif action == "logout" and session_open(args[0]):
        account_services.logout(raw_refresh=args[0]["tokens"].refresh)
        args[0]["tokens"] = None
    elif action == "revoke_own":
        _revoke_own(*args)
    elif action == "steal":
        _steal(*args)
    elif action == "change_password":
        _change_password(args[0], password)
    elif action == "disable":
        _disable(*args)
    elif action == "refresh_reuse":
        _refresh_reuse(*args)


def _call(session: dict, ip: str, agent: str) -> bool:
    """One authenticated request, as the DRF authentication class makes it."""
    if session["tokens"] is None:
        return False
    verdict = tracker.authorize(
        sid=session["tokens"].sid,
        user_id=session["user"].pk,
        started_at=session["started"],
        ip=ip,
        user_agent=agent,
    )
    if verdict is Verdict.ENDED:
        session["tokens"] = None  # ended: the client would log in again later
        return False
    return True


def _revoke_own(current: dict, other: dict) -> None:
    if session_open(current) and session_open(other):
        account_services.session_revoke_own(user_id=other["user"].pk, sid=other["tokens"].sid)
        other["tokens"] = None


def _steal(session: dict) -> None:
    """The thief's call lands in the same flush window as the owner's last one; this
    deployment ends such sessions (SESSION_ANOMALY_ACTION=end) rather than only report them."""
    tracker.flush()  # the owner's client is the session's last known fingerprint
    with override_settings(SESSIONHUB={**settings.SESSIONHUB, "ANOMALY_ACTION": "end"}):
        if _call(session, *THIEF):
            tracker.flush()
    session["tokens"] = None


def _change_password(person: Person, password: str) -> None:
    # The same secret under a new salt is a password change to the code (the user's sessions
    # end), and the demo's later logins for this user still work.
    person.user.refresh_from_db()
    person.user.set_password(password)
    person.user.save()
    _apply_recorded_ends(person)


def _disable(person: Person) -> None:
    person.user.refresh_from_db()
    person.user.is_active = False
    person.user.save()
    _apply_recorded_ends(person)


def _apply_recorded_ends(person: Person) -> None:
    """What the commit hook (or, at the latest, the beat job) does; here at once, so that the
    replay does the same inside a caller's transaction (the tests') as in autocommit."""
    account_services.session_ends_apply(user_id=person.user.pk)


def _refresh_reuse(session: dict) -> None:
    if not session_open(session):
        return
    old = session["tokens"].refresh
    ip, agent = session["ip"], session["agent"]
    session["tokens"] = account_services.token_refresh(raw_refresh=old, ip=ip, user_agent=agent)
    try:  # the rotated token again: a copy of it is in other hands, the session ends
        account_services.token_refresh(raw_refresh=old, ip=ip, user_agent=agent)
    except account_services.SessionEnded:
        session["tokens"] = None


def session_open(session: dict) -> bool:
    return session["tokens"] is not None
