"""API messages follow Accept-Language (English, Simplified Chinese, Russian); catalogs are complete."""

from __future__ import annotations

import ast
import gettext
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import translation

from superapp.asgi import application
from tests.conftest import login_tokens

LOCALE_DIR = Path(settings.BASE_DIR) / "locale"
CATALOGS = ("zh_Hans", "ru")

WRONG_LOGIN = {
    None: "Wrong login or password.",
    "zh-Hans": "账号或密码错误。",
    "ru": "Неверный логин или пароль.",
}


def headers(language: str | None) -> dict:
    return {"HTTP_ACCEPT_LANGUAGE": language} if language else {}


# --- API messages ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("language", list(WRONG_LOGIN))
def test_wrong_password_message_is_translated(language, api, alice):
    response = api.post(
        "/api/v1/auth/login",
        {"login": "alice", "password": "not the password"},
        format="json",
        **headers(language),
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_credentials"  # codes never change with the language
    assert error["message"] == WRONG_LOGIN[language]
    assert response["Content-Language"] == (language or "en").lower()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"),  # what Chinese browsers and phones send
        ("zh", "zh-Hans"),
        ("zh-Hans-CN", "zh-Hans"),
        ("ru-RU,ru;q=0.9", "ru"),
        ("de-DE,de;q=0.9", None),  # unsupported: English
        ("fr, ru;q=0.5", "ru"),
    ],
)
def test_accept_language_variants(accept, expected, api, alice):
    response = api.post(
        "/api/v1/auth/login", {"login": "alice", "password": "nope"}, format="json", **headers(accept)
    )
    assert response.json()["error"]["message"] == WRONG_LOGIN[expected]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "message", "required"),
    [
        (None, "Some fields are not valid.", "This field is required."),
        ("zh-Hans", "部分字段无效。", "该字段是必填项。"),
        ("ru", "Некоторые поля заполнены неверно.", "Обязательное поле."),
    ],
)
def test_registration_validation_errors_are_translated(language, message, required, api):
    # Our envelope message and DRF's own field messages (DRF ships zh_Hans and ru).
    response = api.post(
        "/api/v1/auth/register", {"email": "x@example.com"}, format="json", **headers(language)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"] == message
    assert error["fields"]["password"] == [required]
    assert error["fields"]["display_name"] == [required]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "message"),
    [
        (None, "Give either a phone number or an email address."),
        ("zh-Hans", "请填写手机号或邮箱地址，二选一。"),  # noqa: RUF001 (Chinese punctuation)
        ("ru", "Укажите либо номер телефона, либо адрес электронной почты."),
    ],
)
def test_registration_service_error_is_translated(language, message, api):
    body = {
        "phone": "+8613800138000",
        "email": "x@example.com",
        "password": "a long enough pw",
        "display_name": "X",
    }
    response = api.post("/api/v1/auth/register", body, format="json", **headers(language))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "message"),
    [(None, "Not found."), ("zh-Hans", "未找到。"), ("ru", "Не найдено.")],  # noqa: RUF001
)
def test_404_messages_are_translated(language, message, api, client_for, alice):
    # Django's handler404 (a path that matches no route) ...
    response = api.get("/no/such/page", **headers(language))
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": message, "fields": {}}
    # ... and a service's NotFound through the DRF exception handler.
    response = client_for(alice).get("/api/v1/users/987654321", **headers(language))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == message


@pytest.mark.django_db
def test_one_request_does_not_leak_its_language_into_the_next(api, alice):
    api.post("/api/v1/auth/login", {"login": "alice", "password": "x"}, format="json", **headers("ru"))
    response = api.post("/api/v1/auth/login", {"login": "alice", "password": "x"}, format="json")
    assert response.json()["error"]["message"] == WRONG_LOGIN[None]


def _socket(language: bytes, token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application,
        "/ws/",
        headers=[(b"accept-language", language)],
        subprotocols=["superapp.v1", f"superapp.auth.{token}"],
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (b"ru-RU,ru;q=0.9", "Фрейм не является корректным JSON."),
        (b"zh-CN", "消息帧不是有效的 JSON。"),
        (b"", None),
    ],
)
async def test_websocket_error_frames_follow_accept_language(language, expected, make_user):
    from channels.db import database_sync_to_async

    user = await database_sync_to_async(make_user)(handle="ws_lang")
    access = (await database_sync_to_async(login_tokens)(user))["access"]
    socket = _socket(language, access)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    try:
        await socket.send_to(text_data="{not json")
        frame = await socket.receive_json_from(timeout=10)
        assert frame["error"]["code"] == "bad_frame"
        assert frame["error"]["message"] == (expected or "The frame is not valid JSON.")
    finally:
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_websocket_refusal_reason_follows_accept_language():
    """The reason comes from the authenticator, which runs in a worker thread."""
    socket = _socket(b"ru", "not-a-token")
    connected, _ = await socket.connect(timeout=10)
    assert connected
    frame = await socket.receive_json_from(timeout=10)
    assert frame["error"]["code"] == "not_authenticated"
    assert frame["error"]["message"] == "Недействительный токен доступа."
    await socket.disconnect()


# --- the catalogs ------------------------------------------------------------------------------


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0


def parse_po(path: Path) -> list[Entry]:
    """A small .po reader (stdlib only): active entries, obsolete ``#~`` ones skipped."""
    entries: list[Entry] = []
    entry: Entry | None = None
    target: tuple[str, int] | None = None

    def finish():
        nonlocal entry
        if entry is not None and (entry.msgstr or entry.msgid):
            entries.append(entry)
        entry = None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            finish()
            continue
        if line.startswith("#~"):
            continue
        if line.startswith("#,"):
            if entry is not None and entry.msgstr:
                finish()
            entry = entry or Entry(line=number)
            entry.flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            assert target is not None, f"{path}:{number}: continuation without a keyword"
            keyword, rest = None, line
        else:
            if keyword in ("msgctxt", "msgid") and entry is not None and entry.msgstr:
                finish()
            entry = entry or Entry(line=number)
            match = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
            if match:
                target = ("msgstr", int(match.group(1)))
            elif keyword in ("msgid", "msgid_plural", "msgctxt", "msgstr"):
                target = (keyword, 0)
            else:
                raise AssertionError(f"{path}:{number}: unexpected {keyword!r}")
        text = ast.literal_eval(rest)  # a C-style quoted string; Python's rules match for .po escapes
        assert entry is not None and target is not None
        name, index = target
        if name == "msgstr":
            entry.msgstr[index] = entry.msgstr.get(index, "") + text
        else:
            setattr(entry, name, (getattr(entry, name) or "") + text)
    finish()
    return entries


def placeholders(text: str) -> set[str]:
    """Named placeholders, plus "%s"/"%d" when positional ones are used."""
    return set(re.findall(r"%\((\w+)\)[sdif]", text)) | set(re.findall(r"%[sd]", text))


@pytest.fixture(scope="module", params=CATALOGS)
def catalog(request):
    path = LOCALE_DIR / request.param / "LC_MESSAGES" / "django.po"
    assert path.exists(), f"{path} is missing: run scripts/update_translations.sh"
    return request.param, path, parse_po(path)


def test_catalog_is_complete_and_nothing_is_fuzzy(catalog):
    language, path, entries = catalog
    header = next(e for e in entries if e.msgid == "")
    assert "fuzzy" not in header.flags, f"{path}: the header is marked fuzzy"
    nplurals = int(re.search(r"nplurals=(\d+)", header.msgstr[0]).group(1))
    messages = [e for e in entries if e.msgid]
    assert len(messages) > 50
    problems = []
    for entry in messages:
        where = f"{path.name}:{entry.line} {entry.msgid!r}"
        if "fuzzy" in entry.flags:
            problems.append(f"fuzzy: {where}")
        forms = range(nplurals) if entry.msgid_plural is not None else range(1)
        if any(not entry.msgstr.get(n) for n in forms):
            problems.append(f"untranslated: {where}")
            continue
        source = placeholders(entry.msgid_plural if entry.msgid_plural is not None else entry.msgid)
        for n in forms:
            if "python-format" in entry.flags and placeholders(entry.msgstr[n]) != source:
                problems.append(f"placeholders differ: {where} -> {entry.msgstr[n]!r}")
    assert not problems, f"{language}: run scripts/update_translations.sh and translate:\n" + "\n".join(
        problems
    )


def test_compiled_catalog_matches_the_po_file(catalog):
    """The committed .mo is compiled from the current .po (scripts/update_translations.sh)."""
    _language, path, entries = catalog
    mo = path.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run scripts/update_translations.sh"
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in entries:
        if not entry.msgid or "fuzzy" in entry.flags or not all(entry.msgstr.values()):
            continue  # not compiled; test_catalog_is_complete_and_nothing_is_fuzzy reports those
        key = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
        if entry.msgid_plural is None:
            got = compiled._catalog.get(key)  # type: ignore[attr-defined]
            if got != entry.msgstr[0]:
                stale.append(entry.msgid)
        elif any(compiled._catalog.get((key, n)) != text for n, text in entry.msgstr.items()):  # type: ignore[attr-defined]
            stale.append(entry.msgid)
    assert not stale, f"{mo} is older than its .po; run scripts/update_translations.sh: {stale[:5]}"


@pytest.mark.parametrize(
    ("language", "count", "expected"),
    [
        ("ru", 1, "Завершён 1 сеанс."),
        ("ru", 3, "Завершено 3 сеанса."),
        ("ru", 5, "Завершено 5 сеансов."),
        ("ru", 21, "Завершён 21 сеанс."),
        ("zh-hans", 2, "已结束 2 个会话。"),
    ],
)
def test_plural_forms(language, count, expected):
    with translation.override(language):
        text = translation.ngettext("%(count)d session revoked.", "%(count)d sessions revoked.", count)
    assert text % {"count": count} == expected


def test_the_parser_reads_escapes_continuations_and_plurals(tmp_path):
    po = tmp_path / "t.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
        '#, fuzzy, python-format\nmsgid "a \\"b\\"\\n"\n"c %(x)s"\nmsgstr ""\n\n'
        'msgctxt "ctx"\nmsgid "one"\nmsgid_plural "many"\nmsgstr[0] "1"\nmsgstr[1] ""\n\n'
        '#~ msgid "old"\n#~ msgstr "alt"\n',
        encoding="utf-8",
    )
    header, fuzzy, plural = parse_po(po)
    assert header.msgid == "" and "nplurals=2" in header.msgstr[0]
    assert fuzzy.msgid == 'a "b"\nc %(x)s' and fuzzy.flags == {"fuzzy", "python-format"}
    assert plural.msgctxt == "ctx" and plural.msgid_plural == "many" and plural.msgstr == {0: "1", 1: ""}
