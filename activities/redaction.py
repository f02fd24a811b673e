"""PII redaction for audit events: find personal data and secrets in free text and replace
each span with `[REDACTED:<kind>]`.

A pure function, run inside the ingest request (the response reports `redacted_count`).
Detectors that have a checksum use it (Luhn for cards, mod-97 for IBANs, `ipaddress` for
IPv6), so ids, versions, timestamps, prices and plain integers pass through untouched.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from typing import Any

Span = tuple[int, int, str]

# Keys whose value is a secret whatever it looks like. Matched against the key's words
# (split on punctuation and camelCase) and against the key with separators removed.
SECRET_KEY_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "authorization",
    "cookie", "cookies", "credential", "credentials", "privatekey", "accesskey", "secretkey",
    "sessionid", "setcookie", "clientsecret", "otp", "cvv", "cvc", "pin",
})
# Run-together keys ("dbpassword", "xapikey"): these anywhere, or these at the end (so that
# "secretary" and "passwordless_enabled" stay ordinary).
_SECRET_KEY_INFIXES = ("apikey", "privatekey", "accesskey", "secretkey", "authtoken", "accesstoken")
_SECRET_KEY_SUFFIXES = ("password", "passwd", "secret", "token", "cookie", "credentials", "sessionid")

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


@functools.lru_cache(maxsize=4096)  # keys repeat from one event to the next
def is_secret_key(key: str) -> bool:
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    if any(w in SECRET_KEY_WORDS for w in words):
        return True
    joined = "".join(words)
    return any(part in joined for part in _SECRET_KEY_INFIXES) or joined.endswith(_SECRET_KEY_SUFFIXES)


# --- secrets ---------------------------------------------------------------------------
_PEM = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.DOTALL)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}")
_BEARER = re.compile(r"\b[Bb]earer\s+[A-Za-z0-9\-._~+/]{8,}=*")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b")
_API_KEYS = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"       # Stripe
    r"|whsec_[A-Za-z0-9+/=]{16,}"                          # webhook signing secrets
    r"|mk_[A-Za-z0-9_-]{32,}"                              # Headwater master keys
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"                           # GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"                      # Slack
    r"|AIza[0-9A-Za-z_-]{35}"                              # Google
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"               # OpenAI, Anthropic
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"         # SendGrid
    r"|npm_[A-Za-z0-9]{36}"                                # npm
    r"|shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"                 # Shopify
    r")"
)

# --- personal data ---------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![ -]?\d)")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])")
_PHONE_E164 = re.compile(r"(?<![\w+])\+[1-9](?:[ .-]?\(?\d{1,4}\)?){2,7}(?![\w])")
_PHONE_NANP = re.compile(r"(?<![\w(])(?:\(\d{3}\)\s?|\b[2-9]\d{2}[-. ])\d{3}[-. ]\d{4}(?![\w-])")
_PHONE_TRUNK = re.compile(
    r"(?<![\w.-])(?:0[1-9](?:[ .-]\d{2}){4}"             # FR: 01 23 45 67 89
    r"|0\d{1,4}[ -]\d{3,4}[ -]?\d{3,4})(?![\w.-])"        # UK / DE: 020 7946 0958, 030 12345678
)
_HAS_DIGIT = re.compile(r"\d")

_CARD_PREFIXES = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9]|2|3|7)|35|5[06-8]")


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_valid(number: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _is_card(match: str) -> bool:
    number = _digits(match)
    return 13 <= len(number) <= 19 and _CARD_PREFIXES.match(number) is not None and luhn_valid(number)


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


def _is_ipv6(match: str) -> bool:
    if match.count(":") < 2 or not any(c in "0123456789abcdefABCDEF" for c in match):
        return False
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return True


def _is_phone(match: str) -> bool:
    return 8 <= len(_digits(match)) <= 15


# Hints: a simple pattern that every match of the detector's own contains, several times
# cheaper to look for than the detector (whose look-behinds run at every position).
_AWS_HINT = re.compile(r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|NPA|NVA|IPA)")
_IBAN_HINT = re.compile(r"[A-Z]{2}\d\d")
_SSN_HINT = re.compile(r"\d{3}[- ]\d\d[- ]\d{4}")
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_NANP_HINT = re.compile(r"\d{3}[-. ]\d{4}")
_TRUNK_HINT = re.compile(r"(?:^|[^\w.-])0\d{1,4}[ .-]\d")
_API_KEY_HINT = re.compile(r"[sprm]k_|whsec_|gh[pousr]_|github_pat_|glpat-|xox|AIza|sk-|SG\.|npm_|shp")

# (kind, pattern, validator, precondition on (text, digit count)). Earlier entries win
# overlaps. The preconditions are cheap tests that skip a regex that cannot match: each names
# a character or a count without which its pattern has no match.
Precondition = Callable[[str, int], bool]
_DETECTORS: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None, Precondition]] = [
    ("secret", _PEM, None, lambda t, d: "PRIVATE KEY" in t),
    ("secret", _JWT, None, lambda t, d: "eyJ" in t),
    ("secret", _BEARER, None, lambda t, d: "earer" in t),
    ("secret", _AWS_KEY_ID, None, lambda t, d: d > 0 and len(t) >= 20 and _AWS_HINT.search(t) is not None),
    ("secret", _API_KEYS, None, lambda t, d: len(t) >= 15 and _API_KEY_HINT.search(t) is not None),
    ("email", _EMAIL, None, lambda t, d: "@" in t),
    ("iban", _IBAN, iban_valid, lambda t, d: d >= 2 and len(t) >= 15 and _IBAN_HINT.search(t) is not None),
    ("card", _CARD, _is_card, lambda t, d: d >= 13),
    ("ssn", _SSN, None, lambda t, d: d >= 9 and _SSN_HINT.search(t) is not None),
    ("ipv6", _IPV6, _is_ipv6, lambda t, d: ":" in t),
    ("ipv4", _IPV4, None, lambda t, d: d >= 4 and _IPV4_HINT.search(t) is not None),
    ("phone", _PHONE_E164, _is_phone, lambda t, d: d >= 8 and "+" in t),
    ("phone", _PHONE_NANP, None, lambda t, d: d >= 10 and _NANP_HINT.search(t) is not None),
    ("phone", _PHONE_TRUNK, _is_phone, lambda t, d: d >= 8 and _TRUNK_HINT.search(t) is not None),
]
# A string with none of these characters and no digit can only hold a secret that one of the
# first five detectors finds (each has its own cheap hint).
_TEXT_ONLY_HINTS = ("@", ":", "PRIVATE KEY", "eyJ", "earer")
_DIGITS = "0123456789"
# A string of letters, digits and underscores only (ids, keys, tokens) can hold no match of
# the detectors that need punctuation or spaces: only these.
_WORD_ONLY = re.compile(r"\w*", re.ASCII)
_WORD_DETECTORS = [entry for entry in _DETECTORS if entry[1] in (_AWS_KEY_ID, _API_KEYS, _IBAN, _CARD)]
# Strings up to this length are remembered: keys, enumerations, names, user agents repeat
# across events (16,384 of them at most, a few MB).
_REMEMBERED_LENGTH = 256


def find_pii(text: str) -> list[Span]:
    """Non-overlapping spans of PII in `text`, in order."""
    if len(text) <= _REMEMBERED_LENGTH:
        return list(_remembered_pii(text))
    return _find_pii(text)


@functools.lru_cache(maxsize=16_384)
def _remembered_pii(text: str) -> tuple[Span, ...]:
    return tuple(_find_pii(text))


def _find_pii(text: str) -> list[Span]:
    digits = sum(map(text.count, _DIGITS)) if _HAS_DIGIT.search(text) else 0
    if not digits and len(text) < 15 and not any(hint in text for hint in _TEXT_ONLY_HINTS):
        return []
    detectors = _WORD_DETECTORS if _WORD_ONLY.fullmatch(text) else _DETECTORS
    taken: list[Span] = []
    for kind, pattern, validator, worth_trying in detectors:
        if not worth_trying(text, digits):
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < t_end and t_start < end for t_start, t_end, _ in taken):
                continue
            if validator is not None and not validator(match.group()):
                continue
            taken.append((start, end, kind))
    taken.sort()
    return taken


def redact_text(text: str) -> tuple[str, int]:
    # find_pii's choice inlined: this runs for every string of every redacted event.
    spans = _remembered_pii(text) if len(text) <= _REMEMBERED_LENGTH else _find_pii(text)
    if not spans:
        return text, 0
    parts, cursor = [], 0
    for start, end, kind in spans:
        parts.append(text[cursor:start])
        parts.append(f"[REDACTED:{kind}]")
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts), len(spans)


SECRET_VALUE = "[REDACTED:secret]"


def redact_value(value: Any) -> tuple[Any, int]:
    """Redact every string in a JSON value, keys included, recursively."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        count = 0
        out: dict[str, Any] = {}
        for key, item in value.items():
            new_key, key_count = redact_text(key)
            if is_secret_key(key):
                new_item, item_count = SECRET_VALUE, 1
            else:
                new_item, item_count = redact_value(item)
            while new_key in out:  # two keys redacted to the same text: keep both values
                new_key += "'"
            out[new_key] = new_item
            count += key_count + item_count
        return out, count
    if isinstance(value, list):
        count = 0
        items = []
        for item in value:
            new_item, item_count = redact_value(item)
            items.append(new_item)
            count += item_count
        return items, count
    return value, 0


def redact_audit_event(event: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Redact the free-text parts of an audit event: `metadata` (keys and values),
    `target.name`, `actor.name` and `actor.email`. Ids, `tenant_id`, `action` and `category`
    are left as they are: they are identifiers the user chose, and redacting them would
    break filtering."""
    out = dict(event)
    total = 0
    if isinstance(out.get("metadata"), dict):
        out["metadata"], count = redact_value(out["metadata"])
        total += count
    for part, fields in (("actor", ("name", "email")), ("target", ("name",))):
        obj = out.get(part)
        if isinstance(obj, dict):
            obj = dict(obj)
            for field in fields:
                if isinstance(obj.get(field), str):
                    obj[field], count = redact_text(obj[field])
                    total += count
            out[part] = obj
    return out, total


def redact_event_body(body: dict[str, Any], mode: str) -> tuple[dict[str, Any], int]:
    """A canonical event's body with what its source's `redact` mode asks for redacted (see
    models.sources.Redaction): `audit`, an audit event's free text as `redact_audit_event`
    does; `all`, that and every event's `properties`, `traits` and `context`; `off`, nothing."""
    if mode == "off":
        return body, 0
    total = 0
    if body.get("type") == "audit":
        body, total = redact_audit_event(body)
    if mode == "all":
        body = dict(body)
        for part in ("properties", "traits", "context"):
            if isinstance(body.get(part), dict):
                body[part], count = redact_value(body[part])
                total += count
    return body, total
