"""kipvs.sources.api.ListCall sends exactly the request of the official client's generated list call
(watch and the one-shot API source no longer load CoreV1Api / DiscoveryV1Api: ~250 modules)."""
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kipvs.sources.api import list_endpoint_slices, list_nodes, list_services


class Sent(Exception):
    pass


def recording_client():
    configuration = client.Configuration(host="https://10.0.0.1:6443")
    configuration.api_key = {"BearerToken": "Bearer abc"}
    api_client = client.ApiClient(configuration)
    sent = []

    def call_api(*request, _request_timeout=None):
        sent.append((request, _request_timeout))
        raise Sent

    api_client.call_api = call_api
    return api_client, sent


def request_of(call, **kwargs):
    api_client, sent = recording_client()
    with pytest.raises(Sent):
        call(api_client)(**kwargs)
    return sent[0]


LISTS = [
    dict(limit=500, _preload_content=False, _request_timeout=3.0),
    dict(limit=500, _preload_content=False, _request_timeout=3.0, resource_version="0",
         resource_version_match="NotOlderThan"),
    dict(limit=500, _preload_content=False, _request_timeout=2.5, _continue="token/with=chars&"),
    dict(watch=True, resource_version="123", allow_watch_bookmarks=True, timeout_seconds=300,
         _preload_content=False, _request_timeout=(30.0, 330.0)),
]


@pytest.mark.parametrize("kwargs", LISTS)
def test_services_endpoint_slices_and_nodes_are_requested_as_the_generated_calls_request_them(kwargs):
    assert request_of(lambda c: list_services(c).__call__, **kwargs) == \
        request_of(lambda c: client.CoreV1Api(c).list_service_for_all_namespaces, **kwargs)
    assert request_of(lambda c: list_endpoint_slices(c).__call__, **kwargs) == \
        request_of(lambda c: client.DiscoveryV1Api(c).list_endpoint_slice_for_all_namespaces, **kwargs)
    assert request_of(lambda c: list_nodes(c, "node-a").__call__, **kwargs) == \
        request_of(lambda c: client.CoreV1Api(c).list_node, field_selector="metadata.name=node-a", **kwargs)
    assert request_of(lambda c: list_nodes(c).__call__, **kwargs) == \
        request_of(lambda c: client.CoreV1Api(c).list_node, **kwargs)


def test_an_answer_that_is_not_2xx_is_the_official_clients_api_exception():
    api_client, _ = recording_client()

    class Response:
        status, reason, data, headers = 410, "Gone", b'{"kind":"Status","code":410}', {}

        def read(self):
            return self.data

        def getheaders(self):
            return {}

    api_client.call_api = lambda *request, _request_timeout=None: Response()
    with pytest.raises(ApiException) as raised:
        list_services(api_client)(limit=500)
    assert raised.value.status == 410


def test_unknown_parameters_and_preloaded_content_are_refused():
    api_client, _ = recording_client()
    with pytest.raises(TypeError):
        list_services(api_client)(label_selectr="a=b")
    with pytest.raises(ValueError):
        list_services(api_client)(_preload_content=True)


def test_a_client_older_than_37_is_named_with_what_to_install():
    """Before 37.0 the client's ApiClient has no param_serialize (its generator's older call_api): kipvs
    says which client it needs when it lists, instead of an AttributeError."""
    from kipvs.errors import ToolMissing

    class OldApiClient:  # what kubernetes 29-36 give: call_api(resource_path, method, ...), no param_serialize
        def call_api(self, *args, **kwargs):
            raise AssertionError("not reached")

    with pytest.raises(ToolMissing, match=r"kubernetes Python client 37 or later .*'kubernetes>=37,<40'"):
        list_services(OldApiClient())()
