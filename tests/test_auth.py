"""contentstore.remote.auth: WWW-Authenticate parsing, and the Authenticator against a
real registry in token mode with its token server, and an htpasswd (Basic) registry.

Token servers that misbehave (no token in the answer, a realm that is not http(s), a
server error) are played by the fault proxy answering what the test asks.
"""

import types

import pytest
import requests

from contentstore.errors import RegistryError, RegistryUnreachable, Unauthorized
from contentstore.remote import auth
from contentstore.remote.auth import Authenticator, Challenge, parse_challenges, scope_for
from contentstore.remote.credentials import Credentials
from contentstore.remote.transport import make_session
from contentstore.testing import free_port

from servers import PASSWORD, USER

pytestmark = pytest.mark.needs("docker-registry")

SERVICE = "contentstore-test-registry"


# -- parse_challenges ------------------------------------------------------------------------


def test_one_bearer_challenge_with_a_quoted_comma():
    [challenge] = parse_challenges('Bearer realm="https://auth.example.com/token",'
                                   'service="registry.example.com",scope="repository:a/b:pull,push"')
    assert challenge == Challenge("bearer", {"realm": "https://auth.example.com/token",
                                             "service": "registry.example.com",
                                             "scope": "repository:a/b:pull,push"})
    assert challenge.realm == "https://auth.example.com/token"


def test_several_challenges_in_one_header():
    challenges = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://a.test/token",'
                                  'service="s" , Digest realm="d", qop="auth,auth-int", nonce="n"')
    assert [(c.scheme, c.params) for c in challenges] == [
        ("basic", {"realm": "Registry Realm"}),
        ("bearer", {"realm": "https://a.test/token", "service": "s"}),
        ("digest", {"realm": "d", "qop": "auth,auth-int", "nonce": "n"}),
    ]


def test_escapes_and_a_challenge_inside_a_quoted_string():
    [challenge] = parse_challenges(r'Bearer realm="https://a.test/token",'
                                   r'error_description="say \"hi\", or use Basic realm=x \\ now"')
    assert challenge.params["error_description"] == 'say "hi", or use Basic realm=x \\ now'


def test_case_tokens_and_whitespace():
    challenges = parse_challenges('BASIC Realm=plain,  Bearer  realm = "https://a.test/t" ,SERVICE=reg.io')
    assert [(c.scheme, c.params) for c in challenges] == [
        ("basic", {"realm": "plain"}), ("bearer", {"realm": "https://a.test/t", "service": "reg.io"})]
    assert parse_challenges("Bearer") == [Challenge("bearer", {})]
    assert parse_challenges("") == [] and parse_challenges(None) == []
    # a scheme without parameters before another challenge does not hide the other
    assert [c.scheme for c in parse_challenges('Negotiate, Basic realm="x"')][-1] == "basic"


def test_scope_for():
    assert scope_for("team/app") == "repository:team/app:pull"
    assert scope_for("team/app", "pull,push") == "repository:team/app:pull,push"


# -- against the real token server ------------------------------------------------------------


@pytest.fixture
def session():
    with make_session() as s:
        yield s


def challenge_of(url: str, session) -> requests.Response:
    """The registry's own 401 answer (with its WWW-Authenticate) for ``url``."""
    response = session.get(url, timeout=10)
    assert response.status_code == 401
    return response


def status_with(url: str, header: str | None) -> int:
    return requests.get(url, headers={"Authorization": header} if header else {}, timeout=10).status_code


@pytest.fixture
def clock(monkeypatch):
    """The time the token cache sees (only auth's; the servers keep the real one)."""
    now = [1_000_000.0]
    monkeypatch.setattr(auth, "time", types.SimpleNamespace(time=lambda: now[0]))
    return now


def test_learns_the_bearer_challenge_of_the_registry(token_registry, session):
    reg = token_registry.registry
    authenticator = Authenticator(reg.host, session, None)
    assert authenticator.header(scope_for("team/app")) is None  # nothing learned yet: no header
    assert authenticator.learn(challenge_of(f"{reg.url}/v2/", session))
    assert authenticator.challenge.scheme == "bearer"
    assert authenticator.challenge.realm == f"{token_registry.token_url}/token"
    assert authenticator.challenge.params["service"] == SERVICE


def test_anonymous_token_is_refused_for_a_private_repository(token_registry, session):
    reg = token_registry.registry
    anonymous = Authenticator(reg.host, session, None)
    anonymous.learn(challenge_of(f"{reg.url}/v2/", session))
    header = anonymous.header(scope_for("team/private"))
    assert header.startswith("Bearer ")
    assert status_with(f"{reg.url}/v2/team/private/tags/list", header) == 401  # the token grants nothing
    [asked] = token_registry.log()
    assert asked["authorization"] is False and asked["scope"] == ["repository:team/private:pull"]


def test_password_grant(token_registry, session):
    reg = token_registry.registry
    authenticator = Authenticator(reg.host, session, Credentials(USER, PASSWORD))
    authenticator.learn(challenge_of(f"{reg.url}/v2/", session))
    header = authenticator.header(scope_for("team/private"))
    # past authentication: the repository simply does not exist
    assert status_with(f"{reg.url}/v2/team/private/tags/list", header) == 404
    assert status_with(f"{reg.url}/v2/team/other/tags/list", header) == 401  # scoped to what was asked
    [asked] = token_registry.log()
    assert asked["authorization"] is True and asked["method"] == "GET"


def test_wrong_password(token_registry, session):
    reg = token_registry.registry
    authenticator = Authenticator(reg.host, session, Credentials(USER, "wrong-password"))
    authenticator.learn(challenge_of(f"{reg.url}/v2/", session))
    with pytest.raises(Unauthorized) as info:
        authenticator.header(scope_for("team/private"))
    assert str(info.value) == f"unauthorized: {reg.host}: incorrect username or password (bad credentials)"
    assert info.value.status == 401 and "wrong-password" not in str(info.value)


def test_identity_token_is_a_refresh_token(token_registry, session):
    reg = token_registry.registry
    good = Authenticator(reg.host, session, Credentials(identity_token="contentstore-test-refresh-token"))
    good.learn(challenge_of(f"{reg.url}/v2/", session))
    assert status_with(f"{reg.url}/v2/team/private/tags/list", good.header(scope_for("team/private"))) == 404
    assert [e["method"] for e in token_registry.log()] == ["POST"]
    revoked = Authenticator(reg.host, session, Credentials(identity_token="revoked"))
    revoked.learn(challenge_of(f"{reg.url}/v2/", session))
    with pytest.raises(Unauthorized):
        revoked.header(scope_for("team/private"))


def test_scope_of_the_challenge_is_asked_too(token_registry, session):
    reg = token_registry.registry
    authenticator = Authenticator(reg.host, session, Credentials(USER, PASSWORD))
    # a 401 on a repository names the scope it wants
    assert authenticator.learn(challenge_of(f"{reg.url}/v2/team/a/tags/list", session))
    assert authenticator.challenge.params["scope"] == "repository:team/a:pull"
    header = authenticator.header(scope_for("team/b", "pull,push"))
    assert status_with(f"{reg.url}/v2/team/a/tags/list", header) == 404
    assert status_with(f"{reg.url}/v2/team/b/tags/list", header) == 404
    [asked] = token_registry.log()
    assert asked["scope"] == ["repository:team/a:pull", "repository:team/b:pull,push"]


def test_token_is_cached_per_scope_until_it_expires(token_registry, session, clock):
    reg = token_registry.registry
    authenticator = Authenticator(reg.host, session, Credentials(USER, PASSWORD))
    authenticator.learn(challenge_of(f"{reg.url}/v2/", session))
    a = scope_for("team/a")
    first = authenticator.header(a)
    assert authenticator.header(a) == first
    assert len(token_registry.log()) == 1
    other = authenticator.header(scope_for("team/b"))  # another scope: another token
    assert other != first and len(token_registry.log()) == 2
    # the token server says 300 s; it is renewed EXPIRY_MARGIN (10 s) before
    clock[0] += 300 - auth.EXPIRY_MARGIN - 1
    assert authenticator.header(a) == first and len(token_registry.log()) == 2
    clock[0] += 2
    renewed = authenticator.header(a)
    assert renewed != first and len(token_registry.log()) == 3
    assert status_with(f"{reg.url}/v2/team/a/tags/list", renewed) == 404


def test_invalidate_drops_one_scope(token_registry, session):
    reg = token_registry.registry
    authenticator = Authenticator(reg.host, session, Credentials(USER, PASSWORD))
    authenticator.learn(challenge_of(f"{reg.url}/v2/", session))
    a, b = scope_for("team/a"), scope_for("team/b")
    first_a, first_b = authenticator.header(a), authenticator.header(b)
    authenticator.invalidate(a)
    authenticator.invalidate("repository:never:pull")  # unknown scopes are fine
    assert authenticator.header(a) != first_a
    assert authenticator.header(b) == first_b
    assert len(token_registry.log()) == 3


# -- Basic ------------------------------------------------------------------------------------------


def test_basic_challenge_of_an_htpasswd_registry(htpasswd_registry, session):
    url = f"{htpasswd_registry.url}/v2/"
    authenticator = Authenticator(htpasswd_registry.host, session, Credentials(USER, PASSWORD))
    assert authenticator.learn(challenge_of(url, session))
    assert authenticator.challenge == Challenge("basic", {"realm": "basic-realm"})
    header = authenticator.header(scope_for("anything"))
    assert header == requests.auth._basic_auth_str(USER, PASSWORD)
    assert status_with(url, header) == 200
    wrong = Authenticator(htpasswd_registry.host, session, Credentials(USER, "nope"))
    wrong.learn(challenge_of(url, session))
    assert status_with(url, wrong.header("x")) == 401
    # no username (no credentials, or only an identity token): nothing to send
    for credentials in (None, Credentials(identity_token="t")):
        nobody = Authenticator(htpasswd_registry.host, session, credentials)
        assert nobody.learn(challenge_of(url, session))
        assert nobody.header("x") is None


# -- challenges and token servers that are wrong ------------------------------------------------------


@pytest.fixture
def liar(proxy_factory, registry):
    """The fault proxy: a registry's 401 with any WWW-Authenticate, and a token realm
    answering anything."""
    return proxy_factory(registry.url)


def learned(liar, session, www_authenticate: str, credentials=None) -> Authenticator:
    liar.faults({"match": "GET /v2/", "status": 401, "www_authenticate": www_authenticate, "times": 1})
    authenticator = Authenticator("registry.test", session, credentials)
    assert authenticator.learn(challenge_of(f"{liar.url}/v2/", session))
    return authenticator


def test_bearer_is_preferred_over_basic(liar, session, token_registry):
    authenticator = learned(liar, session, f'Basic realm="b", Bearer realm="{token_registry.token_url}/token",'
                                           f'service="{SERVICE}"', Credentials(USER, PASSWORD))
    assert authenticator.challenge.scheme == "bearer"
    assert authenticator.header("repository:x:pull").startswith("Bearer ")


def test_answer_without_a_known_challenge_teaches_nothing(liar, session):
    authenticator = learned(liar, session, 'Basic realm="first"')
    for header in ("", 'Negotiate abc', 'Digest realm="d", nonce="n"'):
        liar.faults({"match": "GET /v2/", "status": 401, "www_authenticate": header, "times": 1}
                    if header else {"match": "GET /v2/", "status": 401, "times": 1})
        assert not authenticator.learn(challenge_of(f"{liar.url}/v2/", session))
    assert authenticator.challenge == Challenge("basic", {"realm": "first"})  # kept


@pytest.mark.parametrize("realm", ["ftp://auth.test/token", "file:///etc/passwd", "/token", ""])
def test_realm_that_is_not_http_is_refused(liar, session, realm):
    header = f'Bearer realm="{realm}",service="s"' if realm else 'Bearer service="s"'
    authenticator = learned(liar, session, header, Credentials(USER, PASSWORD))
    with pytest.raises(RegistryError) as info:
        authenticator.header("repository:x:pull")
    assert type(info.value) is RegistryError
    assert str(info.value) == f"registry.test: bearer challenge without a usable realm: {realm or None!r}"
    assert liar.requests("/token") == []


@pytest.mark.parametrize("body", ['{"expires_in": 300}', '{"token": ""}', "not json", "[]", '"token"'])
def test_token_answer_without_a_token_is_refused(liar, session, body):
    authenticator = learned(liar, session, f'Bearer realm="{liar.url}/token",service="s"')
    liar.faults({"match": "GET /token", "reply": {"status": 200, "body": body}, "times": -1})
    with pytest.raises(RegistryError) as info:
        authenticator.header("repository:x:pull")
    assert str(info.value) == f"token from {liar.url}/token: the answer holds no token"


def test_token_server_errors(liar, session):
    authenticator = learned(liar, session, f'Bearer realm="{liar.url}/token",service="s"')
    liar.faults({"match": "GET /token", "status": 400, "times": 1})  # (a 5xx would be retried first)
    with pytest.raises(RegistryError) as info:
        authenticator.header("repository:x:pull")
    assert type(info.value) is RegistryError and info.value.status == 400
    assert str(info.value) == f"token from {liar.url}/token: 400 Bad Request"
    liar.faults({"match": "GET /token", "status": 403, "times": 1})
    with pytest.raises(Unauthorized, match=r"^unauthorized: registry.test: authentication required "
                                           r"\(injected\)$"):
        authenticator.header("repository:x:pull")
    port = free_port()
    with make_session(retries=0) as quick:  # (the default session retries for 15 s first)
        gone = learned(liar, quick, f'Bearer realm="http://127.0.0.1:{port}/token"')
        with pytest.raises(RegistryUnreachable,
                           match=rf"^token from http://127.0.0.1:{port}/token: cannot reach the registry: "):
            gone.header("repository:x:pull")


@pytest.mark.parametrize("expires_in, lifetime", [(5, 60), ("soon", 60), (None, 60), (600, 600)])
def test_short_or_unreadable_lifetimes_count_as_a_minute(liar, session, clock, expires_in, lifetime):
    import json
    authenticator = learned(liar, session, f'Bearer realm="{liar.url}/token",service="s"')
    body = {"access_token": "abc"} if expires_in is None else {"token": "abc", "expires_in": expires_in}
    liar.faults({"match": "GET /token", "reply": {"status": 200, "body": json.dumps(body)}, "times": -1})
    assert authenticator.header("repository:x:pull") == "Bearer abc"
    clock[0] += lifetime - auth.EXPIRY_MARGIN - 1
    authenticator.header("repository:x:pull")
    assert len(liar.requests("/token")) == 1
    clock[0] += 2
    authenticator.header("repository:x:pull")
    assert len(liar.requests("/token")) == 2
