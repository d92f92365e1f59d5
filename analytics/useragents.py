"""A small User-Agent parser for the admin's "devices" of a user: client, system, kind.

Enough to tell an admin "Firefox 133 on Linux (desktop)" from "curl 8.5 (script)" and "iPhone
app": the common browsers, mobile systems, HTTP libraries and bots, and any `product/version`
for the rest. Not a full database (ua-parser's regexes are 200 kB and change monthly); a
User-Agent is what the client chose to send, so it is a hint, never an identity.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

# (name shown, pattern giving the version), in order: Edge and Opera also say "Chrome", Chrome
# also says "Safari", so the more specific come first.
BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"\b(?:OPR|Opera)/(\d+)")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"\bVersion/(\d+(?:\.\d+)?).*\bSafari/")),
)
# HTTP libraries and command-line tools: the first product token names them.
SCRIPTS = {
    "curl": "curl",
    "wget": "Wget",
    "python-requests": "Python requests",
    "python-httpx": "Python httpx",
    "python-urllib": "Python urllib",
    "aiohttp": "Python aiohttp",
    "go-http-client": "Go net/http",
    "okhttp": "OkHttp",
    "postmanruntime": "Postman",
    "httpie": "HTTPie",
    "axios": "axios",
    "node-fetch": "node-fetch",
    "node": "Node.js",
    "undici": "Node.js undici",
    "java": "Java",
    "apache-httpclient": "Apache HttpClient",
    "libwww-perl": "Perl LWP",
    "ruby": "Ruby",
    "dart": "Dart",
    "insomnia": "Insomnia",
}
SYSTEMS = (
    (re.compile(r"\biPad\b.*?\bOS (\d+)"), "iPadOS"),
    (re.compile(r"\biPhone\b.*?\bOS (\d+)"), "iOS"),
    (re.compile(r"\bAndroid (\d+)"), "Android"),
    (re.compile(r"\bWindows NT 10\.0"), "Windows 10/11"),
    (re.compile(r"\bWindows NT 6\.[23]"), "Windows 8"),
    (re.compile(r"\bWindows NT 6\.1"), "Windows 7"),
    (re.compile(r"\bWindows\b"), "Windows"),
    (re.compile(r"\bCrOS\b"), "ChromeOS"),
    (re.compile(r"\bMac OS X\b"), "macOS"),
    (re.compile(r"\bLinux\b"), "Linux"),
)
BOT = re.compile(r"bot\b|crawler|spider|slurp|headless", re.IGNORECASE)
PRODUCT = re.compile(r"^([A-Za-z][\w.+-]*)(?:/([\w.+-]+))?")
APP_SYSTEM = re.compile(r"(?:^|[-_ ])(ios|android)(?:$|[-_ /])", re.IGNORECASE)


@dataclass(frozen=True)
class Device:
    client: str  # "Firefox 133", "curl 8.5.0", "" when nothing is recognisable
    system: str  # "Linux", "iOS 17", "" when not said
    kind: str  # desktop, mobile, tablet, app, script, bot, unknown

    @property
    def label(self) -> str:
        name = self.client or "unknown client"
        if self.system:
            name = f"{name} on {self.system}"
        return f"{name} ({self.kind})"


def _system(user_agent: str) -> str:
    for pattern, name in SYSTEMS:
        found = pattern.search(user_agent)
        if found:
            return f"{name} {found.group(1)}" if found.groups() else name
    return ""


@lru_cache(maxsize=4096)
def parse(user_agent: str) -> Device:
    user_agent = (user_agent or "").strip()[:512]
    if not user_agent:
        return Device("", "", "unknown")
    product = PRODUCT.match(user_agent)
    name, version = (product.group(1), product.group(2) or "") if product else ("", "")
    if BOT.search(user_agent):
        bot = re.search(r"([\w.-]*(?:bot|crawler|spider|Slurp|Headless\w*))", user_agent, re.I)
        return Device(bot.group(1) if bot else name, "", "bot")
    script = SCRIPTS.get(name.lower())
    if script:
        return Device(f"{script} {version}".strip(), "", "script")
    system = _system(user_agent)
    if name == "Mozilla":
        for browser, pattern in BROWSERS:
            found = pattern.search(user_agent)
            if found:
                client = f"{browser} {found.group(1)}"
                break
        else:
            client = ""
        if "iPad" in user_agent or "Tablet" in user_agent:
            kind = "tablet"
        elif "Mobi" in user_agent or "iPhone" in user_agent:
            kind = "mobile"
        elif system.startswith("Android"):
            kind = "tablet"  # Android browsers without "Mobile" are tablets (Google's advice)
        else:
            kind = "desktop"
        return Device(client, system, kind)
    if name:
        app_system = APP_SYSTEM.search(name)
        if not system and app_system:
            system = "iOS" if app_system.group(1).lower() == "ios" else "Android"
        return Device(f"{name} {version}".strip(), system, "app")
    return Device("", system, "unknown")
