"""The PII redaction corpus: every positive must be found with its kind, every negative must
come through untouched."""

from __future__ import annotations

import pytest

from activities.redaction import (
    find_pii,
    iban_valid,
    is_secret_key,
    luhn_valid,
    redact_audit_event,
    redact_text,
)

# (text, the span that must be redacted, its kind)
POSITIVES: list[tuple[str, str, str]] = [
    # --- email -------------------------------------------------------------------------
    ("contact jane@example.com today", "jane@example.com", "email"),
    ("JANE.DOE@EXAMPLE.CO.UK", "JANE.DOE@EXAMPLE.CO.UK", "email"),
    ("first.last+tag@sub.domain.org", "first.last+tag@sub.domain.org", "email"),
    ("<bob_smith@mail-server.io>", "bob_smith@mail-server.io", "email"),
    ("mailto:alice@corp.example", "alice@corp.example", "email"),
    ("user%test@example.net", "user%test@example.net", "email"),
    ("a@b.co", "a@b.co", "email"),
    ("reply to: x.y.z@uni.edu.au.", "x.y.z@uni.edu.au", "email"),
    ("sent by 'o-reilly@books.com'", "o-reilly@books.com", "email"),
    ("email=test123@gmail.com&x=1", "test123@gmail.com", "email"),
    ("(support@headwater.dev)", "support@headwater.dev", "email"),
    ("multi: a1@x.io", "a1@x.io", "email"),
    ("name.surname@company-name.travel", "name.surname@company-name.travel", "email"),
    ("info@xn--bcher-kva.example", "info@xn--bcher-kva.example", "email"),
    ("user@mail.example.museum", "user@mail.example.museum", "email"),
    ("CEO: ceo@acme.com, CTO", "ceo@acme.com", "email"),
    ("noreply@notifications.github.com", "noreply@notifications.github.com", "email"),
    ("ops_team@internal.example.org", "ops_team@internal.example.org", "email"),
    ("x_y-z@a-b.c-d.com", "x_y-z@a-b.c-d.com", "email"),
    ("him@there.uk", "him@there.uk", "email"),
    # --- phone -------------------------------------------------------------------------
    ("+14155552671", "+14155552671", "phone"),
    ("call +1 415 555 2671 now", "+1 415 555 2671", "phone"),
    ("+1 (415) 555-2671", "+1 (415) 555-2671", "phone"),
    ("+44 20 7946 0958", "+44 20 7946 0958", "phone"),
    ("+44 7700 900123", "+44 7700 900123", "phone"),
    ("+49 30 12345678", "+49 30 12345678", "phone"),
    ("+33 1 23 45 67 89", "+33 1 23 45 67 89", "phone"),
    ("+81-3-1234-5678", "+81-3-1234-5678", "phone"),
    ("+61 2 9876 5432", "+61 2 9876 5432", "phone"),
    ("+91 98765 43210", "+91 98765 43210", "phone"),
    ("+353 1 234 5678", "+353 1 234 5678", "phone"),
    ("+8613812345678", "+8613812345678", "phone"),
    ("(415) 555-2671", "(415) 555-2671", "phone"),
    ("(415)555-2671", "(415)555-2671", "phone"),
    ("415-555-2671", "415-555-2671", "phone"),
    ("415.555.2671", "415.555.2671", "phone"),
    ("415 555 2671", "415 555 2671", "phone"),
    ("phone: 212-555-0199.", "212-555-0199", "phone"),
    ("020 7946 0958", "020 7946 0958", "phone"),
    ("07700 900123", "07700 900123", "phone"),
    ("030 12345678", "030 12345678", "phone"),
    ("01 23 45 67 89", "01 23 45 67 89", "phone"),
    ("06.12.34.56.78", "06.12.34.56.78", "phone"),
    ("0161 496 0000", "0161 496 0000", "phone"),
    ("tel 0800-123-4567", "0800-123-4567", "phone"),
    ("mobile +1-202-555-0143", "+1-202-555-0143", "phone"),
    ("+7 495 123-45-67", "+7 495 123-45-67", "phone"),
    ("+55 11 91234-5678", "+55 11 91234-5678", "phone"),
    ("+34 612 34 56 78", "+34 612 34 56 78", "phone"),
    ("+27 21 123 4567", "+27 21 123 4567", "phone"),
    # --- payment cards (Luhn-valid) ----------------------------------------------------
    ("4111111111111111", "4111111111111111", "card"),
    ("card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111", "card"),
    ("4111-1111-1111-1111", "4111-1111-1111-1111", "card"),
    ("5500 0000 0000 0004", "5500 0000 0000 0004", "card"),
    ("5555555555554444", "5555555555554444", "card"),
    ("2223000048400011", "2223000048400011", "card"),
    ("378282246310005", "378282246310005", "card"),
    ("3782 822463 10005", "3782 822463 10005", "card"),
    ("371449635398431", "371449635398431", "card"),
    ("6011111111111117", "6011111111111117", "card"),
    ("6011 0009 9013 9424", "6011 0009 9013 9424", "card"),
    ("3530111333300000", "3530111333300000", "card"),
    ("3566002020360505", "3566002020360505", "card"),
    ("30569309025904", "30569309025904", "card"),
    ("38520000023237", "38520000023237", "card"),
    ("6200000000000005", "6200000000000005", "card"),
    ("4012888888881881", "4012888888881881", "card"),
    ("4222222222222", "4222222222222", "card"),
    ("paid with 5105105105105100.", "5105105105105100", "card"),
    ("6759649826438453", "6759649826438453", "card"),
    # --- US SSN -------------------------------------------------------------------------
    ("123-45-6789", "123-45-6789", "ssn"),
    ("ssn: 078-05-1120", "078-05-1120", "ssn"),
    ("SSN 219 09 9999", "219 09 9999", "ssn"),
    ("his number is 536-22-1234.", "536-22-1234", "ssn"),
    ("(457-55-5462)", "457-55-5462", "ssn"),
    ("001-01-0001", "001-01-0001", "ssn"),
    ("899-99-9998", "899-99-9998", "ssn"),
    ("ssn=665-12-3456", "665-12-3456", "ssn"),
    ("212-34-5678", "212-34-5678", "ssn"),
    ("SSN: 734 52 1099", "734 52 1099", "ssn"),
    # --- IBAN (mod-97 valid) ------------------------------------------------------------
    ("GB82WEST12345698765432", "GB82WEST12345698765432", "iban"),
    ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32", "iban"),
    ("DE89370400440532013000", "DE89370400440532013000", "iban"),
    ("DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00", "iban"),
    ("FR1420041010050500013M02606", "FR1420041010050500013M02606", "iban"),
    ("NL91ABNA0417164300", "NL91ABNA0417164300", "iban"),
    ("ES9121000418450200051332", "ES9121000418450200051332", "iban"),
    ("IT60X0542811101000000123456", "IT60X0542811101000000123456", "iban"),
    ("CH9300762011623852957", "CH9300762011623852957", "iban"),
    ("BE68539007547034", "BE68539007547034", "iban"),
    ("pay to IE29AIBK93115212345678 by friday", "IE29AIBK93115212345678", "iban"),
    ("NO9386011117947", "NO9386011117947", "iban"),
    # --- IPv4 ---------------------------------------------------------------------------
    ("203.0.113.9", "203.0.113.9", "ipv4"),
    ("client 192.168.1.1 connected", "192.168.1.1", "ipv4"),
    ("10.0.0.1", "10.0.0.1", "ipv4"),
    ("from 8.8.8.8.", "8.8.8.8", "ipv4"),
    ("255.255.255.255", "255.255.255.255", "ipv4"),
    ("ip=172.16.254.3;", "172.16.254.3", "ipv4"),
    ("[127.0.0.1]:8080", "127.0.0.1", "ipv4"),
    ("X-Forwarded-For: 198.51.100.23", "198.51.100.23", "ipv4"),
    ("0.0.0.0", "0.0.0.0", "ipv4"),
    ("host 100.64.12.200 up", "100.64.12.200", "ipv4"),
    # --- IPv6 ---------------------------------------------------------------------------
    ("2001:db8::1", "2001:db8::1", "ipv6"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ipv6"),
    ("from fe80::1ff:fe23:4567:890a today", "fe80::1ff:fe23:4567:890a", "ipv6"),
    ("::1", "::1", "ipv6"),
    ("::ffff:192.0.2.128", "::ffff:192.0.2.128", "ipv6"),
    ("2606:4700:4700::1111", "2606:4700:4700::1111", "ipv6"),
    ("ip=2a00:1450:4001:81d::200e", "2a00:1450:4001:81d::200e", "ipv6"),
    ("FE80::0202:B3FF:FE1E:8329", "FE80::0202:B3FF:FE1E:8329", "ipv6"),
    ("2001:db8:0:0:1:0:0:1", "2001:db8:0:0:1:0:0:1", "ipv6"),
    ("fd12:3456:789a:1::1", "fd12:3456:789a:1::1", "ipv6"),
    # --- secrets ------------------------------------------------------------------------
    ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "secret"),
    ("token eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhY21lIn0.c2lnbmF0dXJlLXZhbHVlLWhlcmU end",
     "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhY21lIn0.c2lnbmF0dXJlLXZhbHVlLWhlcmU", "secret"),
    ("AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "secret"),
    ("aws key ASIAY34FZKBOKMUTVV7A used", "ASIAY34FZKBOKMUTVV7A", "secret"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
     "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----", "secret"),
    ("key: -----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY----- done",
     "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----", "secret"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----",
     "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----", "secret"),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----",
     "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----", "secret"),
    ("Authorization: Bearer abcdef1234567890", "Bearer abcdef1234567890", "secret"),
    ("bearer 0123456789abcdefXYZ==", "bearer 0123456789abcdefXYZ==", "secret"),
    ("Bearer ya29.a0AfH6SMBx-example_token", "Bearer ya29.a0AfH6SMBx-example_token", "secret"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "secret"),
    ("stripe sk_test_4eC39HqLyjWDarjtT1zdp7dc key", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "secret"),
    ("pk_live_51H8xYZabcdefghij", "pk_live_51H8xYZabcdefghij", "secret"),
    ("ghp_1234567890abcdefghijABCDEFGHIJ123456", "ghp_1234567890abcdefghijABCDEFGHIJ123456", "secret"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "secret"),
    ("glpat-abcdefghij1234567890", "glpat-abcdefghij1234567890", "secret"),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "secret"),
    ("xoxp-1234-5678-abcdefghij", "xoxp-1234-5678-abcdefghij", "secret"),
    ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA1234567890abcdefghijklmnopqrstuv", "secret"),
    ("sk-proj-abcdefghijklmnopqrstuvwxyz123456", "sk-proj-abcdefghijklmnopqrstuvwxyz123456", "secret"),
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "secret"),
    ("SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
     "SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "secret"),
    ("npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm_abcdefghijklmnopqrstuvwxyz0123456789", "secret"),
    ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret"),
    ("mk_dH8qIah62uDS9KTjOMG-gwX2T1_g74au4bsETTbxEx0", "mk_dH8qIah62uDS9KTjOMG-gwX2T1_g74au4bsETTbxEx0", "secret"),
    ("shpat_0123456789abcdef0123456789abcdef", "shpat_0123456789abcdef0123456789abcdef", "secret"),
    ("rk_live_abcdefghijklmnop", "rk_live_abcdefghijklmnop", "secret"),
    ("ghs_abcdefghijklmnopqrstuvwxyz0123456789", "ghs_abcdefghijklmnopqrstuvwxyz0123456789", "secret"),
    ("AROAEXAMPLEID1234567", "AROAEXAMPLEID1234567", "secret"),
    # --- in context --------------------------------------------------------------------
    ("Contact: Jane <jane.roe@example.org>, +1 646 555 0101", "jane.roe@example.org", "email"),
    ("Contact: Jane <jane.roe@example.org>, +1 646 555 0101", "+1 646 555 0101", "phone"),
    ("refund to card ending 4242 4242 4242 4242 done", "4242 4242 4242 4242", "card"),
    ("wire to DE44 5001 0517 5407 3249 31 please", "DE44 5001 0517 5407 3249 31", "iban"),
    ("login from 81.2.69.142 (GB)", "81.2.69.142", "ipv4"),
    ("curl -H 'Authorization: Bearer tok_abcdefgh12345678'", "Bearer tok_abcdefgh12345678", "secret"),
    ("employee SSN 321-54-9876 on file", "321-54-9876", "ssn"),
    ("v6 peer [2001:db8:cafe::17]:443", "2001:db8:cafe::17", "ipv6"),
    ("reach me at (646) 555-0199 x12", "(646) 555-0199", "phone"),
    ("cc: ap@vendor.example; ar@vendor.example", "ar@vendor.example", "email"),
]

# Values that must come through untouched.
NEGATIVES: list[str] = [
    # ids
    "550e8400-e29b-41d4-a716-446655440000",
    "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "12345678-1234-4123-8123-123456789012",
    "00000000-0000-0000-0000-000000000000",
    "F47AC10B-58CC-4372-A567-0E02B2C3D479",
    "01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "01HX5ZZKBKACTAV9WEVGEMMVRY",
    "evt_01M82M72W1597PWXXV66DGYEGD",
    "req_b6374e75cd26cf6f72e5a2b5",
    "user_123",
    "cus_NffrFeUfNV2Hib",
    "ORD-456",
    "ORD-2024-000123",
    "INV-2024-0001",
    "SKU-001",
    "PO#48213",
    "ticket #4521",
    "JIRA-1234",
    "order 1234567",
    "commit 3f2a9c1",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "d41d8cd98f00b204e9800998ecf8427e",
    "tenant_acme_corp",
    "acme-corp",
    "project-42",
    "v1.2.3",
    # timestamps and dates
    "2024-01-15T15:00:00Z",
    "2024-01-15T15:00:00.123Z",
    "2024-01-15T15:00:00+05:30",
    "2024-01-15 15:00:00",
    "2024-01-15",
    "15/01/2024",
    "01/15/2024",
    "Jan 15, 2024",
    "15:00:00",
    "10:30",
    "2026-11-22T21:40:46.000Z",
    "1970-01-01T00:00:00Z",
    "20240115T150000Z",
    "2024-W03",
    # versions
    "1.2.3",
    "10.0.1",
    "2.14.3-rc.1",
    "1.0.0-alpha+001",
    "0.23.1",
    "v18.6.3",
    "Python 3.11.7",
    "Chrome/120.0.6099.109",
    "node v20.20.2",
    "build 2024.01.15",
    # prices and amounts
    "99.99",
    "$1,234.56",
    "€ 12,50",
    "EUR 1.234,56",
    "USD 100",
    "1,000,000",
    "0.5",
    "-42.1",
    "3.14159",
    "12.5%",
    "£19.99",
    "¥10000",
    "1e-9",
    "total: 150.00",
    "discount 20% off 49.99",
    # plain integers
    "0",
    "42",
    "1234",
    "123456789",
    "1700000000",
    "1700000000000",
    "9007199254740991",
    "18446744073709551615",
    "4111111111111112",  # Luhn-invalid
    "1234567812345678",  # Luhn-invalid
    "5555555555554445",
    "1111222233334444",
    "100000000000000000",
    "3141592653589793",
    "20240115",
    "5551234567",
    "4155552671",
    "123456789012",
    "987654321",
    # paths and urls
    "/usr/local/bin/python3",
    "/api/v1/streams/claim",
    "/home/user/docs/report-2024.pdf",
    "C:\\Users\\Alice\\Documents\\file.txt",
    "./src/main.py",
    "../config/settings.yaml",
    "s3://bucket/path/to/object.json",
    "https://example.com/pricing",
    "https://example.com/a/b?page=2&sort=desc",
    "file:///etc/hosts",
    "/var/log/nginx/access.log.1",
    "gs://data/2024/01/15/part-0001.parquet",
    "https://cdn.example.com/v1.2.3/app.js",
    "docs/README.md#L10-L20",
    "refs/heads/main",
    # look-alikes that are not PII
    "user at example dot com",
    "@mention",
    "name@",
    "@example.com",
    "not an email: a@b",
    "123-456",
    "12-34-56",
    "000-12-3456",  # SSNs never start with 000
    "666-12-3456",  # ... or 666
    "123-00-4567",  # ... or have group 00
    "1.2.3.4.5",
    "256.1.1.1",
    "999.999.999.999",
    "10.0",
    "1.1",
    "a:b:c",
    "Foo::bar",
    "std::vector<int>",
    "12:34:56",
    "00:1A:2B:3C:4D:5E",
    "de:ad:be:ef",
    "GB82WEST12345698765433",  # IBAN with a bad check
    "DE00370400440532013000",
    "XX12ABCDEFGHIJKLMNOP",
    "AKIA",
    "Bearer",
    "bearer token missing",
    "sk_live_",
    "ghp_short",
    "eyJhbGciOiJIUzI1NiJ9",
    "Basic realm",
    "password",  # the word itself, as a value under an ordinary key
    "token expired",
    "the secret sauce",
    "BEGIN PRIVATE KEY",
    # ordinary text
    "User signed up",
    "Invoice paid in full",
    "Plan changed from starter to pro",
    "Exported 1,204 rows to CSV",
    "Deleted 3 files",
    "Role granted: admin",
    "Login failed (attempt 3 of 5)",
    "Retry after 30 s",
    "HTTP 429 Too Many Requests",
    "status=200 duration=12.5ms",
    "Page 2 of 10",
    "Room 101, Floor 3",
    "Section 4.2.1",
    "Chapter 11",
    "ISO 8601",
    "RFC 4122",
    "UTF-8",
    "base64",
    "x" * 300,
    "",
    "Ünïcödé ✓ emoji 🎉",
    "temperature -3.5°C",
    "coords 48.8584, 2.2945",
    "1080p 60fps",
    "ratio 16:9",
    "score 98/100",
]


@pytest.mark.parametrize(("text", "span", "kind"), POSITIVES, ids=[f"{k}-{i}" for i, (_, _, k) in enumerate(POSITIVES)])
def test_positive(text: str, span: str, kind: str) -> None:
    found = [(text[s:e], k) for s, e, k in find_pii(text)]
    assert (span, kind) in found, found
    redacted, count = redact_text(text)
    assert f"[REDACTED:{kind}]" in redacted and span not in redacted
    assert count >= 1


@pytest.mark.parametrize("text", NEGATIVES, ids=[f"neg-{i}" for i in range(len(NEGATIVES))])
def test_negative(text: str) -> None:
    assert find_pii(text) == [], find_pii(text)
    assert redact_text(text) == (text, 0)


def test_corpus_size() -> None:
    assert len(POSITIVES) >= 150
    assert len(NEGATIVES) >= 150
    assert {kind for _, _, kind in POSITIVES} == {"email", "phone", "card", "ssn", "iban", "ipv4", "ipv6", "secret"}


@pytest.mark.parametrize("key", ["password", "Password", "db_password", "userPassword", "passwd", "secret",
                                 "client_secret", "clientSecret", "token", "access_token", "refreshToken",
                                 "api_key", "apiKey", "API-KEY", "x-api-key", "authorization", "Authorization",
                                 "cookie", "Set-Cookie", "private_key", "aws_secret_access_key", "session_id",
                                 "credentials", "passphrase"])
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["name", "email_verified", "tokens_used", "author", "description", "keyboard",
                                 "passport_country", "user_id", "plan", "path", "secretary",
                                 "passwordless_enabled"])
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_whole_value_under_a_secret_key_is_redacted() -> None:
    event = {
        "action": "user.login", "category": "auth", "tenant_id": "jane@example.com",
        "actor": {"id": "jane@example.com", "type": "user", "name": "Jane +1 415 555 2671", "email": "jane@example.com"},
        "target": {"id": "10.0.0.1", "type": "host", "name": "db at 10.0.0.1"},
        "metadata": {
            "password": "hunter2", "credentials": {"user": "x", "pass": "y"}, "apiKey": 12345,
            "note": "mail bob@example.com or call (415) 555-2671",
            "nested": {"list": ["ok", "4111 1111 1111 1111", {"ip": "2001:db8::1"}]},
            "carol@example.com": "key holds an email",
            "plain": 42, "ok": True, "none": None,
        },
    }
    redacted, count = redact_audit_event(event)
    meta = redacted["metadata"]
    assert meta["password"] == meta["credentials"] == meta["apiKey"] == "[REDACTED:secret]"
    assert meta["note"] == "mail [REDACTED:email] or call [REDACTED:phone]"
    assert meta["nested"]["list"] == ["ok", "[REDACTED:card]", {"ip": "[REDACTED:ipv6]"}]
    assert meta["[REDACTED:email]"] == "key holds an email"
    assert meta["plain"] == 42 and meta["ok"] is True and meta["none"] is None
    assert redacted["actor"] == {"id": "jane@example.com", "type": "user", "name": "Jane [REDACTED:phone]",
                                 "email": "[REDACTED:email]"}
    assert redacted["target"] == {"id": "10.0.0.1", "type": "host", "name": "db at [REDACTED:ipv4]"}
    assert redacted["tenant_id"] == "jane@example.com"  # ids are left alone
    # 3 secret keys, 2 in note, 2 nested, 1 key, actor name and email, target name
    assert count == 3 + 2 + 2 + 1 + 2 + 1
    assert event["metadata"]["password"] == "hunter2"  # the input is not mutated


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")
