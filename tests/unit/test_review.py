"""The review page's core: the episodes its index folds from the topics, who it believes and
lets judge, and what its routes refuse (Flask's test client; the verdict's write and the
figure run on a real broker in tests/integration/test_review.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from flask.testing import FlaskClient

from review.access import TOKEN_AGE_S, FormKeys, RefusedError, identify
from review.episodes import EVENTS_KEPT, EpisodeIndex, Query
from review.settings import AuthSettings, ReviewSettings
from review.web import HEADERS, make_app

PROXY = "127.0.0.1"
JUDGE = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "ops, anomaly-judges"}
READER = {"X-Forwarded-User": "bob", "X-Forwarded-Groups": "ops"}


def opened(n: int, asset: str = "pump-01", **more: Any) -> dict[str, Any]:
    return {"type": "open", "episode_id": f"readings/0/{n}", "asset_id": asset, "model": "pumps",
            "model_version": "v1", "started_at": f"2026-12-01T00:{n:02d}:00Z", "score": 2.0,
            "threshold": 1.0, "incident": None, "suppressed": False, **more}  # fmt: skip


def event(kind: str, n: int, **more: Any) -> dict[str, Any]:
    return {"type": kind, "episode_id": f"readings/0/{n}", "score": 1.5, **more}


def verdict(n: int, kind: str, by: str = "alice") -> dict[str, Any]:
    return {"episode_id": f"readings/0/{n}", "verdict": kind, "by": by}


# the index


def test_an_episode_follows_its_events_to_its_resolve() -> None:
    index = EpisodeIndex()
    index.event(opened(1))
    entry = index.get("readings/0/1")
    assert entry is not None
    assert (entry.state, entry.asset_id, entry.model) == ("open", "pump-01", "pumps")
    assert (entry.model_version, entry.started_at) == ("v1", "2026-12-01T00:01:00Z")
    assert (entry.peak_score, entry.threshold) == (2.0, 1.0)
    assert entry.opened is entry.events[0]
    assert entry.opened["type"] == "open"
    assert (entry.suppressed, entry.incident) == (False, None)
    assert set(entry.known()) == {"open"}  # no resolve yet
    index.event(event("quiet", 1, score=3.0))
    assert (entry.state, entry.peak_score) == ("quiet", 3.0)
    index.event(event("resume", 1))
    assert entry.state == "open"
    index.event(event("suppress", 1))
    assert entry.suppressed
    index.event(event("unsuppress", 1, incident="readings/0/0"))
    assert entry.suppressed is False
    assert entry.incident == "readings/0/0"
    index.event(event("resolve", 1, ended_at="2026-12-01T00:09:00Z", records=40, peak_score=4.5))
    assert (entry.state, entry.ended_at, entry.records, entry.peak_score) == (
        "resolved", "2026-12-01T00:09:00Z", 40, 4.5)  # fmt: skip
    assert [e["type"] for e in entry.events] == ["open", "quiet", "resume", "suppress",
                                                 "unsuppress", "resolve"]  # fmt: skip
    assert set(entry.known()) == {"open", "resolve"}
    assert entry.known()["resolve"]["records"] == 40


def test_an_open_says_what_it_holds_and_what_it_lacks_is_said_plainly() -> None:
    index = EpisodeIndex()
    index.event(opened(1, suppressed=True, incident="readings/0/0"))
    held = index.get("readings/0/1")
    assert held is not None
    assert (held.suppressed, held.incident) == (True, "readings/0/0")
    index.event({"type": "open", "episode_id": "readings/0/2", "ts": "2026-12-01T00:02:00Z",
                 "incident": ""})  # fmt: skip
    bare = index.get("readings/0/2")
    assert bare is not None
    assert (bare.asset_id, bare.model, bare.model_version) == ("", "default", "")
    assert bare.started_at == "2026-12-01T00:02:00Z"  # its record's time
    assert bare.peak_score == 0.0
    assert math.isnan(bare.threshold)
    assert (bare.suppressed, bare.incident) == (False, None)
    index.event(event("resolve", 2, ended_at="x", records="many"))
    assert bare.records is None  # not a count


def test_a_repeated_open_keeps_the_first_and_events_of_unseen_episodes_are_left_out() -> None:
    index = EpisodeIndex()
    index.event(opened(1))
    index.event(opened(1, asset="pump-09"))  # published twice (at least once)
    index.event(event("resolve", 7, ended_at="x"))  # opened before the history read
    index.event({"type": "sensor_fault", "asset_id": "pump-01"})  # no episode
    assert len(index) == 1
    entry = index.get("readings/0/1")
    assert entry is not None
    assert entry.asset_id == "pump-01"
    assert index.get("readings/0/7") is None


def test_an_episodes_events_are_bounded_but_its_resolve_is_kept() -> None:
    index = EpisodeIndex()
    index.event(opened(1))
    for _ in range(EVENTS_KEPT + 5):
        index.event(event("quiet", 1))
    index.event(event("resolve", 1, ended_at="x"))
    entry = index.get("readings/0/1")
    assert entry is not None
    assert len(entry.events) == EVENTS_KEPT + 1
    assert entry.events[-1]["type"] == "resolve"


def test_the_latest_verdict_wins_and_one_given_before_its_open_waits_for_it() -> None:
    index = EpisodeIndex()
    index.verdict(verdict(2, "confirmed"))  # the feedback topic read ahead of the alerts
    index.verdict(verdict(2, "maybe"))  # not a verdict
    index.verdict({"verdict": "confirmed"})  # no episode
    index.event(opened(1))
    index.event(opened(2))
    second = index.get("readings/0/2")
    assert second is not None
    assert second.judged == "confirmed"
    index.verdict(verdict(1, "confirmed"))
    index.verdict(verdict(1, "false_alarm", by="carol"))
    first = index.get("readings/0/1")
    assert first is not None
    assert first.judged == "false_alarm"
    assert first.verdict is not None
    assert first.verdict["by"] == "carol"


def test_the_list_shows_open_episodes_first_then_the_latest_and_filters() -> None:
    index = EpisodeIndex()
    for n, asset in enumerate(["pump-01", "pump-02", "fan-03", "pump-04"]):
        index.event(opened(n, asset=asset, model="fans" if asset.startswith("fan") else "pumps"))
    index.event(event("resolve", 3, ended_at="x"))
    index.event(event("quiet", 1))
    index.verdict(verdict(0, "false_alarm"))
    ids = [e.episode_id[-1] for e in index.select(Query())]
    assert ids == ["2", "1", "0", "3"]
    assert [e.asset_id for e in index.select(Query(asset="PUMP"))] == ["pump-02", "pump-01",
                                                                       "pump-04"]  # fmt: skip
    assert [e.asset_id for e in index.select(Query(model="fans"))] == ["fan-03"]
    assert [e.asset_id for e in index.select(Query(state="quiet"))] == ["pump-02"]
    assert [e.asset_id for e in index.select(Query(state="resolved"))] == ["pump-04"]
    assert [e.asset_id for e in index.select(Query(verdict="false_alarm"))] == ["pump-01"]
    assert len(index.select(Query(verdict="none"))) == 3
    assert len(index.select(Query(limit=2))) == 2
    assert index.models() == ["fans", "pumps"]


def test_an_incidents_size_comes_from_its_events() -> None:
    index = EpisodeIndex(keep=100)
    assert index.incident_size("readings/0/1") == 1  # alone, or not known
    assert index.incident_size(None) == 1
    index.event({"type": "incident_open", "incident_id": "readings/0/1", "size": 2})
    index.event({"type": "incident_update", "incident_id": "readings/0/1", "size": 3})
    index.event({"type": "incident_update", "incident_id": "readings/0/1", "size": "x"})
    assert index.incident_size("readings/0/1") == 3
    assert len(index) == 0  # no episode of its own


def test_an_assets_link_finds_its_open_episode_or_else_its_latest() -> None:
    index = EpisodeIndex()
    index.event(opened(1))
    index.event(opened(2))
    index.event(opened(3))
    index.event(event("resolve", 3, ended_at="x"))
    index.event(event("resolve", 1, ended_at="x"))
    found = index.latest("pump-01")
    assert found is not None
    assert found.episode_id == "readings/0/2"
    index.event(event("resolve", 2, ended_at="x"))
    found = index.latest("pump-01")
    assert found is not None
    assert found.episode_id == "readings/0/3"
    assert index.latest("pump-99") is None


def test_the_index_keeps_the_latest_episodes() -> None:
    index = EpisodeIndex(keep=3)
    for n in range(5):
        index.event(opened(n))
    assert len(index) == 3
    assert index.get("readings/0/1") is None
    assert index.get("readings/0/2") is not None
    assert index.get("readings/0/4") is not None


def test_verdicts_waiting_for_their_open_and_incident_sizes_are_bounded_too() -> None:
    index = EpisodeIndex(keep=2)
    for n in (1, 2):
        index.verdict(verdict(n, "confirmed"))
        index.event({"type": "incident_open", "incident_id": f"i{n}", "size": 2})
    for n in (1, 2):  # exactly `keep`: all kept
        index.event(opened(n))
        entry = index.get(f"readings/0/{n}")
        assert entry is not None
        assert entry.judged == "confirmed"
        assert index.incident_size(f"i{n}") == 2
    for n in (3, 4, 5):
        index.verdict(verdict(n, "confirmed"))
        index.event({"type": "incident_open", "incident_id": f"i{n}", "size": 2})
    assert index.incident_size("i3") == 1  # the oldest went
    assert index.incident_size("i5") == 2
    for n in (3, 5):
        index.event(opened(n))
    dropped, kept = index.get("readings/0/3"), index.get("readings/0/5")
    assert dropped is not None
    assert kept is not None
    assert (dropped.judged, kept.judged) == ("none", "confirmed")


# who is believed


def test_the_proxys_headers_are_believed_only_from_the_proxy() -> None:
    auth = AuthSettings()
    assert identify(auth, PROXY, JUDGE.get) == identify(auth, "::1", JUDGE.get)
    who = identify(auth, PROXY, JUDGE.get)
    assert (who.user, who.judge) == ("alice", True)
    assert identify(auth, PROXY, READER.get).judge is False
    unspaced = {"X-Forwarded-User": "eve", "X-Forwarded-Groups": "ops,anomaly-judges"}
    assert identify(auth, PROXY, unspaced.get).judge
    with pytest.raises(RefusedError) as outside:
        identify(auth, "10.1.2.3", JUDGE.get)
    assert outside.value.status == 403
    assert "10.1.2.3 is not the identity proxy" in outside.value.reason
    assert str(outside.value) == outside.value.reason
    for unknown in (None, "", "not-an-address"):
        with pytest.raises(RefusedError) as nowhere:
            identify(auth, unknown, JUDGE.get)
        assert (nowhere.value.status, nowhere.value.reason) == (
            403, "the request's origin is unknown")  # fmt: skip
    for nobody in ({}, {"X-Forwarded-User": "  "}):
        with pytest.raises(RefusedError) as unnamed:
            identify(auth, PROXY, nobody.get)
        assert (unnamed.value.status, unnamed.value.reason) == (
            401, "the identity proxy named no user (X-Forwarded-User)")  # fmt: skip
    cluster = AuthSettings(trusted_proxies=("10.0.0.0/8",), user_header="X-Auth-Request-User",
                           groups_header="X-Auth-Request-Groups", judge_group="ops")  # fmt: skip
    who = identify(cluster, "10.1.2.3",
                   {"X-Auth-Request-User": "dan", "X-Auth-Request-Groups": "ops"}.get)  # fmt: skip
    assert (who.user, who.judge) == ("dan", True)
    with pytest.raises(RefusedError):
        identify(cluster, PROXY, JUDGE.get)


def test_a_forms_token_holds_for_its_user_for_a_while() -> None:
    keys = FormKeys(b"k" * 32)
    token = keys.token("alice", now=1000.0)
    assert keys.valid("alice", token, now=1000.0)
    assert keys.valid("alice", token, now=1000.0 + TOKEN_AGE_S)
    assert not keys.valid("alice", token, now=1001.0 + TOKEN_AGE_S)
    assert not keys.valid("alice", token, now=999.0)  # made in the future
    assert not keys.valid("bob", token, now=1000.0)
    assert not keys.valid("alice", token[:-1] + ("0" if token[-1] != "0" else "1"), now=1000.0)
    assert not keys.valid("alice", "", now=1000.0)
    assert not keys.valid("alice", "x.y", now=1000.0)
    assert not FormKeys(b"j" * 32).valid("alice", token, now=1000.0)
    made, _, _ = keys.token("alice").partition(".")
    assert made.isdigit()


# the routes, before anything reaches Kafka


@pytest.fixture
def index() -> EpisodeIndex:
    index = EpisodeIndex()
    index.event(opened(1))
    index.event(opened(2, asset="pump-02", incident="readings/0/1"))
    index.event({"type": "incident_open", "incident_id": "readings/0/1", "size": 2})
    index.event(event("resolve", 2, ended_at="2026-12-01T00:09:00Z", records=9))
    index.verdict(
        verdict(2, "confirmed", by="carol")
        | {"note": "bearing <worn>", "decided_at": "2026-12-02T00:00:00Z"}
    )
    return index


@pytest.fixture
def client(index: EpisodeIndex) -> FlaskClient:
    return make_app(ReviewSettings(), index).test_client()


def get(client: FlaskClient, path: str, headers: dict[str, str], peer: str = PROXY) -> Any:
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": peer})


def post(client: FlaskClient, path: str, headers: dict[str, str], data: dict[str, str]) -> Any:
    return client.post(path, headers=headers, data=data, environ_base={"REMOTE_ADDR": PROXY})


def token_of(page: str) -> str:
    return page.split('name="token" value="', 1)[1].split('"', 1)[0]


def test_pages_are_refused_without_the_proxy_and_probes_are_not(client: FlaskClient) -> None:
    assert get(client, "/", {}).status_code == 401
    outside = get(client, "/", JUDGE, peer="10.9.9.9")
    assert outside.status_code == 403
    assert "10.9.9.9 is not the identity proxy" in outside.text
    assert get(client, "/episodes/readings/0/1", {}, peer="10.9.9.9").status_code == 403
    assert get(client, "/livez", {}, peer="10.9.9.9").status_code == 200
    assert get(client, "/readyz", {}, peer="10.9.9.9").status_code == 200


def test_every_answer_carries_the_security_headers(client: FlaskClient) -> None:
    for answer in (get(client, "/", JUDGE), get(client, "/", {}), get(client, "/nowhere", JUDGE)):
        for name, value in HEADERS.items():
            assert answer.headers[name] == value
    assert "frame-ancestors 'none'" in HEADERS["Content-Security-Policy"]


def test_the_list_and_an_episode_page(client: FlaskClient) -> None:
    listed = get(client, "/", READER)
    assert listed.status_code == 200
    assert listed.text.index("pump-01") < listed.text.index("pump-02")  # the open one first
    assert 'href="/episodes/readings/0/1"' in listed.text
    assert "pump-01" not in get(client, "/?asset=pump-02", READER).text
    page = get(client, "/episodes/readings/0/2", JUDGE)
    assert page.status_code == 200
    assert 'src="/episodes/readings/0/2/figure.png"' in page.text
    assert "by carol" in page.text
    assert "bearing &lt;worn&gt;" in page.text  # escaped
    assert "9 records" in page.text
    assert "readings/0/1: 2 assets, one cause, one page" in page.text
    assert "readings/0/1 (2 assets)" in listed.text
    assert get(client, "/episodes/readings/0/99", JUDGE).status_code == 404


def test_an_assets_link_opens_its_episode(client: FlaskClient) -> None:
    found = get(client, "/assets/pump-01", JUDGE)
    assert found.status_code == 302
    assert found.headers["Location"] == "/episodes/readings/0/1"
    none = get(client, "/assets/pump-77", JUDGE)
    assert none.headers["Location"] == "/?asset=pump-77"


def test_only_a_judge_gets_the_form_and_a_post_needs_its_token(
    client: FlaskClient, index: EpisodeIndex
) -> None:
    page = get(client, "/episodes/readings/0/1", JUDGE).text
    assert 'value="false_alarm"' in page
    assert "alice · judge" in page
    reader = get(client, "/episodes/readings/0/1", READER).text
    assert 'value="false_alarm"' not in reader
    assert "bob · read only" in reader
    where = "/episodes/readings/0/1/verdict"
    forged = post(client, where, JUDGE, {"verdict": "false_alarm"})
    assert forged.status_code == 403
    assert "token is missing or stale" in forged.text
    others = post(client, where, JUDGE | {"X-Forwarded-User": "mallory"},
                  {"verdict": "false_alarm", "token": token_of(page)})  # fmt: skip
    assert others.status_code == 403  # a token is its user's
    refused = post(client, where, READER, {"verdict": "false_alarm", "token": token_of(page)})
    assert refused.status_code == 403
    assert "bob may read, not judge" in refused.text
    assert post(client, where, JUDGE, {"verdict": "maybe", "token": token_of(page)}
                ).status_code == 400  # fmt: skip
    assert post(client, "/episodes/readings/0/99/verdict", JUDGE,
                {"verdict": "confirmed", "token": token_of(page)}).status_code == 404  # fmt: skip
    untouched = index.get("readings/0/1")
    assert untouched is not None
    assert untouched.verdict is None  # nothing recorded by the refused posts
