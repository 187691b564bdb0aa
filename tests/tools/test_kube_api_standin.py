#!/usr/bin/env python3
"""tools/kube_api_standin.py, the Kubernetes API stand-in, held to what the API reference says:
status codes and Status bodies, resourceVersion, the watch stream (events in order, replay,
410 Expired after compaction, bookmarks, label selectors), 409 on a stale replace, merge patch,
graceful pod deletion, the control API, bearer token and TLS, RBAC by one Role (403 as the API
server words it, the verbs as it maps them); then the same server, run as a
process, driven by a real client: Debian's kubectl (kubernetes-client, tools/install-deps.sh).
Objects come from tests/data/kube-api/."""

import copy
import datetime
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import unittest.mock
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from kube_api_standin import KubeApiStandin, load_role, write_throwaway_tls  # noqa: E402
from testing import clean_environment  # noqa: E402

FIXTURES = ROOT / "tests" / "data" / "kube-api"
NS = "director"
PODS = f"/api/v1/namespaces/{NS}/pods"


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def named(obj, name, **labels):
    """`obj` renamed, with `labels` instead of its own when given."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["name"] = name
    if labels:
        obj["metadata"]["labels"] = labels
    return obj


class Client:
    """A small JSON client of the stand-in (http.client; HTTPS with `ca`)."""

    def __init__(self, api, token=None, ca=None):
        self.host, self.port = api.address[0], api.address[1]
        self.token = token
        self.context = ssl.create_default_context(cafile=ca) if ca else None

    def connection(self, timeout=10):
        if self.context:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def headers(self, content_type="application/json"):
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(self, method, path, body=None, content_type="application/json"):
        """(status, decoded JSON body or text, headers)."""
        connection = self.connection()
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, data, self.headers(content_type))
            response = connection.getresponse()
            raw = response.read()
            try:
                decoded = json.loads(raw)
            except ValueError:
                decoded = raw.decode()
            return response.status, decoded, dict(response.getheaders())
        finally:
            connection.close()

    def watch(self, path, **query):
        return Watch(self, path, query)


class Watch:
    """A watch stream, read one event (line) at a time."""

    def __init__(self, client, path, query):
        query = "&".join(f"{k}={v}" for k, v in {"watch": "1", **query}.items())
        self.connection = client.connection(timeout=10)
        self.connection.request("GET", f"{path}?{query}", headers=client.headers())
        self.response = self.connection.getresponse()

    def next(self):
        """The next event as a dict; None when the stream ended cleanly."""
        line = self.response.readline()
        return json.loads(line) if line else None

    def events(self, count):
        return [self.next() for _ in range(count)]

    def close(self):
        self.connection.close()


def status(code, reason, message, details=None):
    """A Status as the API server shapes it: written here again on purpose, the test's own
    reading of the reference, so that a wrong shape in the stand-in cannot agree with itself."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class StandinTest(unittest.TestCase):
    token = None

    def setUp(self):
        self.api = KubeApiStandin(token=self.token).start()
        self.addCleanup(self.api.stop)
        self.client = Client(self.api, token=self.token)

    def create(self, resource, obj, namespace=NS):
        code, body, _ = self.client.request("POST", f"/api/v1/namespaces/{namespace}/{resource}",
                                            obj)
        self.assertEqual(code, 201, body)
        return body

    def watch(self, path=PODS, **query):
        watch = self.client.watch(path, **query)
        self.addCleanup(watch.close)
        self.assertEqual(watch.response.status, 200)
        self.assertEqual(watch.response.getheader("Transfer-Encoding"), "chunked")
        return watch

    def pods(self, **query):
        path = PODS + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        code, body, _ = self.client.request("GET", path)
        self.assertEqual(code, 200, body)
        return body


class Discovery(StandinTest):
    def test_version_api_and_groups(self):
        code, version, _ = self.client.request("GET", "/version")
        self.assertEqual((code, version["major"]), (200, "1"))
        code, api, _ = self.client.request("GET", "/api")
        self.assertEqual((code, api["kind"], api["versions"]), (200, "APIVersions", ["v1"]))
        code, groups, _ = self.client.request("GET", "/apis")
        self.assertEqual((code, groups), (200, {"kind": "APIGroupList", "apiVersion": "v1",
                                                "groups": []}))

    def test_resource_list_names_the_three_resources(self):
        code, body, _ = self.client.request("GET", "/api/v1")
        self.assertEqual((code, body["kind"], body["groupVersion"]), (200, "APIResourceList", "v1"))
        resources = {r["name"]: r for r in body["resources"]}
        for name, kind in (("pods", "Pod"), ("services", "Service"),
                           ("persistentvolumeclaims", "PersistentVolumeClaim")):
            self.assertEqual(resources[name]["kind"], kind)
            self.assertTrue(resources[name]["namespaced"])
            self.assertEqual(set(resources[name]["verbs"]), {"create", "delete", "get", "list",
                                                             "patch", "update", "watch"})

    def test_anything_else_is_a_not_found_status(self):
        for path in ("/apis/apps/v1", "/api/v1/namespaces/x/configmaps", "/api/v2",
                     "/api/v1/namespaces/x/services/a/log", "/api/v1/namespaces/x/pods/a/exec"):
            code, body, _ = self.client.request("GET", path)
            self.assertEqual((code, body), (404, status(
                404, "NotFound", "the server could not find the requested resource", {})), path)


class Create(StandinTest):
    def test_create_sets_what_the_server_owns(self):
        before = int(self.api.resource_version())
        pod = self.create("pods", fixture("pod.json"))
        self.assertEqual((pod["kind"], pod["apiVersion"]), ("Pod", "v1"))
        self.assertEqual(pod["metadata"]["namespace"], NS)
        self.assertEqual(len(pod["metadata"]["uid"]), 36)
        self.assertRegex(pod["metadata"]["creationTimestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(int(pod["metadata"]["resourceVersion"]), before + 1)
        self.assertEqual(pod["status"], {"phase": "Pending"})
        self.assertEqual(pod["spec"]["containers"], fixture("pod.json")["spec"]["containers"])
        service = self.create("services", fixture("service.json"))
        self.assertRegex(service["spec"]["clusterIP"], r"^10\.96\.")
        self.assertEqual(service["spec"]["ports"][0]["protocol"], "TCP")
        claim = self.create("persistentvolumeclaims", fixture("persistentvolumeclaim.json"))
        self.assertEqual(claim["status"]["phase"], "Pending")
        self.assertEqual(int(claim["metadata"]["resourceVersion"]), before + 3)
        code, got, _ = self.client.request("GET", f"{PODS}/vscode-alice")
        self.assertEqual((code, got), (200, pod))

    def test_second_create_is_409_already_exists(self):
        self.create("pods", fixture("pod.json"))
        code, body, _ = self.client.request("POST", PODS, fixture("pod.json"))
        self.assertEqual((code, body), (409, status(
            409, "AlreadyExists", 'pods "vscode-alice" already exists',
            {"name": "vscode-alice", "kind": "pods"})))
        # the same name in another namespace is another object
        self.create("pods", fixture("pod.json"), namespace="other")

    def test_missing_or_malformed_name_is_422_invalid(self):
        nameless = fixture("pod.json")
        del nameless["metadata"]["name"]
        code, body, _ = self.client.request("POST", PODS, nameless)
        self.assertEqual((code, body["kind"], body["reason"], body["code"]),
                         (422, "Status", "Invalid", 422))
        self.assertEqual(body["details"]["causes"][0]["field"], "metadata.name")
        self.assertEqual(body["details"]["causes"][0]["reason"], "FieldValueRequired")
        for bad in ("Vscode-Alice", "vscode_alice", "-alice", "a" * 254):
            code, body, _ = self.client.request("POST", PODS, named(fixture("pod.json"), bad))
            self.assertEqual((code, body["reason"]), (422, "Invalid"), bad)
            self.assertEqual(body["message"].split(":")[0], f'Pod "{bad}" is invalid', bad)
            self.assertEqual(body["details"]["causes"][0]["reason"], "FieldValueInvalid")
        # a pod may be named by a subdomain, a service only by a DNS-1035 label
        self.create("pods", named(fixture("pod.json"), "1.alice"))
        code, body, _ = self.client.request("POST", f"/api/v1/namespaces/{NS}/services",
                                            named(fixture("service.json"), "1alice"))
        self.assertEqual((code, body["reason"], body["details"]["kind"]), (422, "Invalid", "Service"))
        self.assertEqual(self.pods()["items"][0]["metadata"]["name"], "1.alice")

    def test_a_chunked_body_is_read(self):
        connection = self.client.connection()
        body = json.dumps(fixture("pod.json")).encode()
        connection.request("POST", PODS, iter([body[:100], body[100:]]), self.client.headers(),
                           encode_chunked=True)
        response = connection.getresponse()
        self.assertEqual((response.status, json.loads(response.read())["metadata"]["name"]),
                         (201, "vscode-alice"))
        connection.request("GET", f"{PODS}/vscode-alice", headers=self.client.headers())
        self.assertEqual(connection.getresponse().status, 200)  # the same connection, in step
        connection.close()

    def test_a_pod_without_containers_is_invalid_and_bad_json_is_bad_request(self):
        pod = fixture("pod.json")
        del pod["spec"]["containers"]
        code, body, _ = self.client.request("POST", PODS, pod)
        self.assertEqual((code, body["details"]["causes"][0]["field"]), (422, "spec.containers"))
        connection = self.client.connection()
        connection.request("POST", PODS, b"{not json", self.client.headers())
        response = connection.getresponse()
        self.assertEqual((response.status, json.loads(response.read())["reason"]),
                         (400, "BadRequest"))
        connection.close()


class GetAndList(StandinTest):
    def test_get_of_a_missing_object_is_404_not_found(self):
        code, body, _ = self.client.request("GET", f"{PODS}/nobody")
        self.assertEqual((code, body), (404, status(404, "NotFound", 'pods "nobody" not found',
                                                    {"name": "nobody", "kind": "pods"})))

    def test_list_carries_the_current_version_and_items_without_kind(self):
        self.create("pods", fixture("pod.json"))
        self.create("services", fixture("service.json"))
        body = self.pods()
        self.assertEqual((body["kind"], body["apiVersion"]), ("PodList", "v1"))
        self.assertEqual(body["metadata"]["resourceVersion"], self.api.resource_version())
        self.assertEqual([p["metadata"]["name"] for p in body["items"]], ["vscode-alice"])
        self.assertNotIn("kind", body["items"][0])
        code, other, _ = self.client.request("GET", "/api/v1/namespaces/other/pods")
        self.assertEqual((code, other["items"]), (200, []))
        code, everywhere, _ = self.client.request("GET", "/api/v1/services")
        self.assertEqual((code, len(everywhere["items"]), everywhere["kind"]), (200, 1, "ServiceList"))

    def test_a_list_in_pages_of_limit_items(self):
        for name in ("a", "b", "c", "d", "e"):
            self.create("pods", named(fixture("pod.json"), name))
        first = self.pods(limit="2")
        self.assertEqual([p["metadata"]["name"] for p in first["items"]], ["a", "b"])
        self.assertEqual(first["metadata"]["remainingItemCount"], 3)
        second = self.pods(limit="2", **{"continue": first["metadata"]["continue"]})
        self.assertEqual([p["metadata"]["name"] for p in second["items"]], ["c", "d"])
        last = self.pods(limit="2", **{"continue": second["metadata"]["continue"]})
        self.assertEqual([p["metadata"]["name"] for p in last["items"]], ["e"])
        self.assertNotIn("continue", last["metadata"])
        self.assertEqual(len(self.pods(limit="9")["items"]), 5)
        self.assertNotIn("continue", self.pods()["metadata"])
        code, body, _ = self.client.request("GET", f"{PODS}?limit=2&continue=nonsense")
        self.assertEqual((code, body["reason"]), (400, "BadRequest"))

    def test_an_expired_continue_token_is_410_expired_and_a_new_list_works(self):
        for name in ("a", "b", "c"):
            self.create("pods", named(fixture("pod.json"), name))
        first = self.pods(limit="2")
        self.api.expire_continue_tokens(1)
        self.assertEqual(len(self.pods(limit="2")["items"]), 2)  # a first page has no token
        code, body, _ = self.client.request(
            "GET", f"{PODS}?limit=2&continue={first['metadata']['continue']}")
        self.assertEqual((code, body["reason"], body["code"]), (410, "Expired", 410))
        self.assertEqual(body["kind"], "Status")
        again = self.pods(limit="2", **{"continue": first["metadata"]["continue"]})  # once only
        self.assertEqual([p["metadata"]["name"] for p in again["items"]], ["c"])

    def test_label_selectors_equality_based(self):
        pod = fixture("pod.json")
        self.create("pods", named(pod, "a", user="alice", tier="ide"))
        self.create("pods", named(pod, "b", user="bob", tier="ide"))
        self.create("pods", named(pod, "c", other="x"))
        names = lambda selector: [p["metadata"]["name"]
                                  for p in self.pods(labelSelector=selector)["items"]]
        self.assertEqual(names("user%3Dalice"), ["a"])
        self.assertEqual(names("user%3D%3Dbob"), ["b"])
        self.assertEqual(names("user!%3Dalice"), ["b", "c"])  # true without the label too
        self.assertEqual(names("user"), ["a", "b"])
        self.assertEqual(names("!user"), ["c"])
        self.assertEqual(names("tier%3Dide,user!%3Dbob"), ["a"])  # comma: AND
        self.assertEqual(names("user%3Dcarol"), [])
        code, body, _ = self.client.request("GET", f"{PODS}?labelSelector=user+in+(a,b)")
        self.assertEqual((code, body["reason"]), (400, "BadRequest"))

    def test_field_selector_on_the_name(self):
        self.create("pods", named(fixture("pod.json"), "a"))
        self.create("pods", named(fixture("pod.json"), "b"))
        self.assertEqual([p["metadata"]["name"] for p in
                          self.pods(fieldSelector="metadata.name%3Db")["items"]], ["b"])
        code, body, _ = self.client.request("GET", f"{PODS}?fieldSelector=status.phase%3DRunning")
        self.assertEqual((code, body["reason"]), (400, "BadRequest"))


class ReplaceAndPatch(StandinTest):
    def test_replace_with_a_stale_version_is_409_conflict(self):
        pod = self.create("pods", fixture("pod.json"))
        fresh = copy.deepcopy(pod)
        fresh["metadata"]["labels"]["extra"] = "1"
        fresh["status"] = {"phase": "Running"}  # the main resource ignores status
        code, replaced, _ = self.client.request("PUT", f"{PODS}/vscode-alice", fresh)
        self.assertEqual(code, 200, replaced)
        self.assertEqual(replaced["metadata"]["labels"]["extra"], "1")
        self.assertEqual(replaced["status"], {"phase": "Pending"})
        self.assertEqual(replaced["metadata"]["uid"], pod["metadata"]["uid"])
        self.assertEqual(int(replaced["metadata"]["resourceVersion"]),
                         int(pod["metadata"]["resourceVersion"]) + 1)
        code, body, _ = self.client.request("PUT", f"{PODS}/vscode-alice", pod)  # stale
        self.assertEqual((code, body), (409, status(
            409, "Conflict", 'Operation cannot be fulfilled on pods "vscode-alice": the object '
            'has been modified; please apply your changes to the latest version and try again',
            {"name": "vscode-alice", "kind": "pods"})))
        del pod["metadata"]["resourceVersion"]
        code, body, _ = self.client.request("PUT", f"{PODS}/vscode-alice", pod)
        self.assertEqual((code, body["reason"]), (422, "Invalid"))
        code, body, _ = self.client.request("PUT", f"{PODS}/nobody", named(replaced, "nobody"))
        self.assertEqual((code, body["reason"]), (404, "NotFound"))

    def test_a_write_that_changes_nothing_keeps_the_version(self):
        pod = self.create("pods", fixture("pod.json"))
        code, same, _ = self.client.request("PUT", f"{PODS}/vscode-alice", pod)
        self.assertEqual((code, same["metadata"]["resourceVersion"]),
                         (200, pod["metadata"]["resourceVersion"]))

    def test_merge_patch_of_labels_annotations_and_status(self):
        pod = self.create("pods", fixture("pod.json"))
        patch = {"metadata": {"labels": {"container-director.io/user": None, "new": "yes"},
                              "annotations": {"note": "x"}}}
        code, patched, _ = self.client.request("PATCH", f"{PODS}/vscode-alice", patch,
                                               "application/merge-patch+json")
        self.assertEqual(code, 200, patched)
        self.assertEqual(patched["metadata"]["labels"], {
            "app.kubernetes.io/managed-by": "container-director", "new": "yes"})
        self.assertEqual(patched["metadata"]["annotations"],
                         {"container-director.io/username": "alice", "note": "x"})
        code, body, _ = self.client.request(
            "PATCH", f"{PODS}/vscode-alice",
            {"metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]}},
            "application/merge-patch+json")
        self.assertEqual((code, body["reason"]), (409, "Conflict"))
        code, body, _ = self.client.request("PATCH", f"{PODS}/vscode-alice", patch,
                                            "application/strategic-merge-patch+json")
        self.assertEqual((code, body["reason"]), (415, "UnsupportedMediaType"))
        code, body, _ = self.client.request("PATCH", f"{PODS}/vscode-alice/status",
                                            {"status": {"phase": "Running"}},
                                            "application/merge-patch+json")
        self.assertEqual((code, body["status"]["phase"]), (200, "Running"))
        self.assertEqual(body["metadata"]["labels"], patched["metadata"]["labels"])


class Deletion(StandinTest):
    def test_a_pod_goes_through_deletion_timestamp_then_deleted(self):
        pod = self.create("pods", fixture("pod.json"))
        watch = self.watch(resourceVersion=pod["metadata"]["resourceVersion"])
        code, deleted, _ = self.client.request("DELETE", f"{PODS}/vscode-alice")
        self.assertEqual(code, 200, deleted)
        self.assertEqual(deleted["metadata"]["deletionGracePeriodSeconds"], 30)
        # When it is to be gone: the deletion's time plus the grace period.
        ends = datetime.datetime.strptime(deleted["metadata"]["deletionTimestamp"],
                                          "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        ahead = ends - datetime.datetime.now(datetime.timezone.utc)
        self.assertTrue(datetime.timedelta(seconds=27) < ahead <= datetime.timedelta(seconds=30), ahead)
        modified, gone = watch.events(2)
        self.assertEqual((modified["type"], modified["object"]), ("MODIFIED", deleted))
        self.assertEqual(gone["type"], "DELETED")
        self.assertEqual(gone["object"]["metadata"]["uid"], pod["metadata"]["uid"])
        self.assertGreater(int(gone["object"]["metadata"]["resourceVersion"]),
                           int(deleted["metadata"]["resourceVersion"]))
        code, body, _ = self.client.request("DELETE", f"{PODS}/vscode-alice")
        self.assertEqual((code, body), (404, status(404, "NotFound",
                                                    'pods "vscode-alice" not found',
                                                    {"name": "vscode-alice", "kind": "pods"})))

    def test_immediate_deletion_and_grace_period_zero(self):
        first = self.create("pods", named(fixture("pod.json"), "a"))
        self.create("pods", named(fixture("pod.json"), "b"))
        watch = self.watch(resourceVersion=first["metadata"]["resourceVersion"])
        self.assertEqual(watch.next()["type"], "ADDED")  # b
        self.api.immediate_deletion(True)
        code, _, _ = self.client.request("DELETE", f"{PODS}/a")
        self.assertEqual(code, 200)
        self.api.immediate_deletion(False)
        code, _, _ = self.client.request("DELETE", f"{PODS}/b",
                                         {"kind": "DeleteOptions", "apiVersion": "v1",
                                          "gracePeriodSeconds": 0})
        self.assertEqual(code, 200)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in watch.events(2)],
                         [("DELETED", "a"), ("DELETED", "b")])

    def test_services_and_claims_go_at_once(self):
        self.create("services", fixture("service.json"))
        claim = self.create("persistentvolumeclaims", fixture("persistentvolumeclaim.json"))
        code, body, _ = self.client.request(
            "DELETE", f"/api/v1/namespaces/{NS}/services/vscode-alice")
        self.assertEqual((code, body["kind"]), (200, "Service"))
        code, _, _ = self.client.request("GET", f"/api/v1/namespaces/{NS}/services/vscode-alice")
        self.assertEqual(code, 404)
        watch = self.watch(f"/api/v1/namespaces/{NS}/persistentvolumeclaims",
                           resourceVersion=claim["metadata"]["resourceVersion"])
        self.client.request("DELETE",
                            f"/api/v1/namespaces/{NS}/persistentvolumeclaims/vscode-alice-home")
        self.assertEqual(watch.next()["type"], "DELETED")

    def test_termination_waits_for_the_kubelet_when_told_to(self):
        self.api.termination_delay = None
        self.create("pods", fixture("pod.json"))
        self.client.request("DELETE", f"{PODS}/vscode-alice")
        time.sleep(0.3)
        code, terminating, _ = self.client.request("GET", f"{PODS}/vscode-alice")
        self.assertEqual(code, 200)
        self.assertIn("deletionTimestamp", terminating["metadata"])
        self.api.finish_deletion(NS, "vscode-alice")
        code, _, _ = self.client.request("GET", f"{PODS}/vscode-alice")
        self.assertEqual(code, 404)


    def test_a_pod_stuck_terminating_stays_until_forced(self):
        self.api.termination_delay = 0.1
        self.create("pods", fixture("pod.json"))
        watch = self.watch(resourceVersion=self.api.resource_version())
        stuck = self.api.stick_terminating(NS, "vscode-alice", since=300)
        event = watch.next()
        self.assertEqual((event["type"], event["object"]["metadata"]["deletionTimestamp"]),
                         ("MODIFIED", stuck["metadata"]["deletionTimestamp"]))
        ended = datetime.datetime.strptime(stuck["metadata"]["deletionTimestamp"],
                                           "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        ago = datetime.datetime.now(datetime.timezone.utc) - ended
        self.assertTrue(datetime.timedelta(seconds=290) < ago < datetime.timedelta(seconds=310), ago)
        self.assertEqual(stuck["metadata"]["deletionGracePeriodSeconds"], 30)  # the Pod's own
        self.client.request("DELETE", f"{PODS}/vscode-alice")  # a graceful deletion changes nothing
        time.sleep(0.5)
        code, same, _ = self.client.request("GET", f"{PODS}/vscode-alice")
        self.assertEqual(same["metadata"]["deletionTimestamp"], stuck["metadata"]["deletionTimestamp"])
        # A shorter grace period brings the end forward by the difference, as the API does.
        code, shortened, _ = self.client.request("DELETE", f"{PODS}/vscode-alice?gracePeriodSeconds=10")
        self.assertEqual(code, 200)
        self.assertEqual(shortened["metadata"]["deletionGracePeriodSeconds"], 10)
        moved = ended - datetime.datetime.strptime(shortened["metadata"]["deletionTimestamp"],
                                                   "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        self.assertEqual(moved, datetime.timedelta(seconds=20))
        self.assertEqual(watch.next()["type"], "MODIFIED")
        code, _, _ = self.client.request("GET", f"{PODS}/vscode-alice")
        self.assertEqual(code, 200)
        code, _, _ = self.client.request("DELETE", f"{PODS}/vscode-alice?gracePeriodSeconds=0")
        self.assertEqual(code, 200)
        code, _, _ = self.client.request("GET", f"{PODS}/vscode-alice")
        self.assertEqual(code, 404)
        self.assertEqual(watch.next()["type"], "DELETED")


class Watching(StandinTest):
    def test_events_after_the_list_version_in_order(self):
        self.create("pods", named(fixture("pod.json"), "before"))
        listed = self.pods()["metadata"]["resourceVersion"]
        watch = self.watch(resourceVersion=listed)
        created = self.create("pods", fixture("pod.json"))
        self.api.set_pod_status(NS, "vscode-alice", phase="Running", ready=True,
                                pod_ip="10.1.0.7")
        self.api.immediate_deletion(True)
        self.client.request("DELETE", f"{PODS}/vscode-alice")
        added, running, deleted = watch.events(3)
        self.assertEqual((added["type"], added["object"]), ("ADDED", created))
        self.assertEqual(running["type"], "MODIFIED")
        self.assertEqual(running["object"]["status"]["phase"], "Running")
        self.assertEqual(running["object"]["status"]["podIP"], "10.1.0.7")
        ready = {c["type"]: c["status"] for c in running["object"]["status"]["conditions"]}
        self.assertEqual(ready["Ready"], "True")
        self.assertEqual(deleted["type"], "DELETED")
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in (added, running, deleted)]
        self.assertEqual(versions, sorted(versions))
        self.assertEqual(versions[0], int(listed) + 1)

    def test_held_watches_send_nothing_until_released_then_everything_in_order(self):
        watch = self.watch(resourceVersion=self.pods()["metadata"]["resourceVersion"])
        self.api.hold_watches(True)
        self.create("pods", named(fixture("pod.json"), "a"))
        self.create("pods", named(fixture("pod.json"), "b"))
        heard = []
        reader = threading.Thread(target=lambda: heard.extend(watch.events(2)))
        reader.start()
        reader.join(0.5)
        self.assertEqual(heard, [])
        self.api.hold_watches(False)
        reader.join(10)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in heard],
                         [("ADDED", "a"), ("ADDED", "b")])

    def test_replay_from_an_older_version_in_the_history(self):
        first = self.create("pods", named(fixture("pod.json"), "a"))
        self.create("pods", named(fixture("pod.json"), "b"))
        self.create("pods", named(fixture("pod.json"), "c"))
        watch = self.watch(resourceVersion=first["metadata"]["resourceVersion"])
        self.assertEqual([e["object"]["metadata"]["name"] for e in watch.events(2)], ["b", "c"])

    def test_without_a_version_the_state_comes_first_as_added(self):
        self.create("pods", named(fixture("pod.json"), "a"))
        self.create("pods", named(fixture("pod.json"), "b"))
        for version in (None, "0"):
            watch = self.watch(**({} if version is None else {"resourceVersion": version}))
            self.assertEqual([(e["type"], e["object"]["metadata"]["name"])
                              for e in watch.events(2)], [("ADDED", "a"), ("ADDED", "b")])
            self.api.set_pod_status(NS, "a", phase="Running")
            event = watch.next()
            self.assertEqual((event["type"], event["object"]["metadata"]["name"]), ("MODIFIED", "a"))
            self.api.set_pod_status(NS, "a", phase="Pending")

    def test_compaction_makes_an_old_version_410_expired_in_the_stream(self):
        pod = self.create("pods", fixture("pod.json"))
        old = pod["metadata"]["resourceVersion"]
        self.api.set_pod_status(NS, "vscode-alice", phase="Running")
        self.api.compact()
        watch = self.watch(resourceVersion=old)
        error = watch.next()
        self.assertEqual(error["type"], "ERROR")
        self.assertEqual(error["object"], status(
            410, "Expired", f"too old resource version: {old} ({self.api.resource_version()})"))
        self.assertIsNone(watch.next())  # the stream ends
        # a watch from the current version (a re-list's) still works
        current = self.pods()["metadata"]["resourceVersion"]
        watch = self.watch(resourceVersion=current)
        self.api.set_pod_status(NS, "vscode-alice", phase="Failed")
        self.assertEqual(watch.next()["object"]["status"]["phase"], "Failed")

    def test_the_history_is_bounded(self):
        self.api.history_size = 3
        first = self.create("pods", named(fixture("pod.json"), "a"))
        for name in "bcde":
            self.create("pods", named(fixture("pod.json"), name))
        self.assertEqual(self.watch(resourceVersion=first["metadata"]["resourceVersion"])
                         .next()["object"]["reason"], "Expired")
        recent = int(self.api.resource_version()) - 3
        self.assertEqual([e["object"]["metadata"]["name"]
                          for e in self.watch(resourceVersion=recent).events(3)], ["c", "d", "e"])

    def test_bookmarks_only_to_those_who_allow_them(self):
        version = self.api.resource_version()
        with_bookmarks = self.watch(resourceVersion=version, allowWatchBookmarks="true")
        without = self.watch(resourceVersion=version)
        self.api.wait_watchers(2)
        self.api.bookmark()
        self.create("pods", fixture("pod.json"))
        self.assertEqual(with_bookmarks.next(), {"type": "BOOKMARK", "object": {
            "kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": version}}})
        self.assertEqual(with_bookmarks.next()["type"], "ADDED")
        self.assertEqual(without.next()["type"], "ADDED")

    def test_label_selector_watch_sees_objects_enter_and_leave(self):
        version = self.api.resource_version()
        watch = self.watch(resourceVersion=version, labelSelector="user%3Dalice")
        self.create("pods", named(fixture("pod.json"), "a", user="alice"))
        self.create("pods", named(fixture("pod.json"), "b", user="bob"))
        merge = "application/merge-patch+json"
        self.client.request("PATCH", f"{PODS}/a", {"metadata": {"labels": {"user": "carol"}}}, merge)
        self.client.request("PATCH", f"{PODS}/b", {"metadata": {"labels": {"user": "alice"}}}, merge)
        events = watch.events(3)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in events],
                         [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")])
        # the leaving object is its previous state, at the change's version
        self.assertEqual(events[1]["object"]["metadata"]["labels"], {"user": "alice"})
        self.assertEqual(int(events[1]["object"]["metadata"]["resourceVersion"]),
                         int(events[0]["object"]["metadata"]["resourceVersion"]) + 2)

    def test_end_watches_ends_streams_cleanly_and_a_new_watch_resumes(self):
        pod = self.create("pods", fixture("pod.json"))
        watch = self.watch(resourceVersion=pod["metadata"]["resourceVersion"])
        self.api.wait_watchers(1)
        self.api.set_pod_status(NS, "vscode-alice", phase="Running")
        seen = watch.next()["object"]["metadata"]["resourceVersion"]
        self.api.end_watches()
        self.assertEqual(watch.response.read(), b"")  # the last chunk: a clean end
        self.api.set_pod_status(NS, "vscode-alice", phase="Failed")  # while nobody watches
        again = self.watch(resourceVersion=seen)
        self.assertEqual(again.next()["object"]["status"]["phase"], "Failed")

    def test_timeout_ends_the_stream_cleanly_and_drop_cuts_it(self):
        watch = self.watch(resourceVersion=self.api.resource_version(), timeoutSeconds=1)
        started = time.monotonic()
        self.assertEqual(watch.response.read(), b"")  # the last chunk came: no IncompleteRead
        self.assertLess(time.monotonic() - started, 5)
        dropped = self.watch(resourceVersion=self.api.resource_version())
        self.api.wait_watchers(1)
        self.api.drop_watches()
        with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
            dropped.response.read()  # no last chunk: the connection was cut
        self.assertEqual(self.api.watcher_count(), 0)

    def test_node_failure(self):
        self.create("pods", named(fixture("pod.json"), "a"))
        self.create("pods", named(fixture("pod.json"), "b"))
        self.api.set_pod_status(NS, "a", phase="Running", ready=True, pod_ip="10.1.0.8")
        watch = self.watch(resourceVersion=self.api.resource_version())
        self.api.node_failure(NS, "a")
        self.api.node_failure(NS, "b", deleted=True)
        failed, deleted = watch.events(2)
        self.assertEqual((failed["type"], failed["object"]["status"]["phase"]), ("MODIFIED", "Failed"))
        ready = {c["type"]: c["status"] for c in failed["object"]["status"]["conditions"]}
        self.assertEqual(ready["Ready"], "False")
        self.assertEqual((deleted["type"], deleted["object"]["metadata"]["name"]), ("DELETED", "b"))


class Logs(StandinTest):
    """GET .../pods/{name}/log (the reference: "read log of the specified Pod"): text/plain,
    tailLines, limitBytes."""

    def log(self, name="vscode-alice", **query):
        path = f"{PODS}/{name}/log" + ("?" + "&".join(f"{k}={v}" for k, v in query.items())
                                       if query else "")
        connection = self.client.connection()
        connection.request("GET", path, headers=self.client.headers())
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        return response.status, body, response.getheader("Content-Type")

    def test_the_tail_and_the_byte_limit(self):
        self.create("pods", fixture("pod.json"))
        self.api.set_pod_status(NS, "vscode-alice", phase="Running")
        self.assertEqual(self.log(), (200, "", "text/plain"))  # running, nothing written yet
        self.api.set_pod_log(NS, "vscode-alice", "one\ntwo\nthree\n")
        self.assertEqual(self.log()[:2], (200, "one\ntwo\nthree\n"))
        self.assertEqual(self.log(tailLines=2)[:2], (200, "two\nthree\n"))
        self.assertEqual(self.log(tailLines=0)[:2], (200, ""))
        self.assertEqual(self.log(tailLines=9)[:2], (200, "one\ntwo\nthree\n"))
        # limitBytes counts from the start of what is shown: a final line may be cut
        self.assertEqual(self.log(tailLines=2, limitBytes=5)[:2], (200, "two\nt"))
        self.assertEqual(self.api.requests()[-1],
                         ("GET", f"{PODS}/vscode-alice/log", {"tailLines": "2", "limitBytes": "5"}))

    def test_pending_without_output_missing_and_removed(self):
        self.create("pods", fixture("pod.json"))
        code, body, _ = self.log()
        self.assertEqual((code, json.loads(body)), (400, status(
            400, "BadRequest",
            'container "ide" in pod "vscode-alice" is waiting to start: ContainerCreating')))
        self.api.set_pod_log(NS, "vscode-alice", "early\n")
        self.assertEqual(self.log()[:2], (200, "early\n"))
        self.client.request("DELETE", f"{PODS}/vscode-alice?gracePeriodSeconds=0")
        code, body, _ = self.log()
        self.assertEqual((code, json.loads(body)["reason"]), (404, "NotFound"))
        self.create("pods", fixture("pod.json"))  # a new pod of that name has no output yet
        self.assertEqual(self.log()[0], 400)

    def test_bad_counts_and_methods(self):
        self.create("pods", fixture("pod.json"))
        for query in ({"tailLines": "-1"}, {"tailLines": "x"}, {"limitBytes": "0"}):
            code, body, _ = self.log(**query)
            self.assertEqual((code, json.loads(body)["reason"]), (400, "BadRequest"), query)
        code, body, _ = self.client.request("POST", f"{PODS}/vscode-alice/log", {})
        self.assertEqual((code, body["reason"]), (405, "MethodNotAllowed"))

    def test_container_state_as_the_kubelet_reports_it(self):
        self.create("pods", fixture("pod.json"))
        waiting = {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}
        pod = self.api.set_pod_status(NS, "vscode-alice", container_state=waiting)
        self.assertEqual(pod["status"]["phase"], "Pending")
        container = pod["status"]["containerStatuses"][0]
        self.assertEqual((container["name"], container["state"], container["ready"],
                          container["restartCount"]), ("ide", waiting, False, 0))
        pod = self.api.set_pod_status(NS, "vscode-alice", phase="Failed", container_state={
            "terminated": {"exitCode": 3, "reason": "Error"}}, restart_count=2)
        container = pod["status"]["containerStatuses"][0]
        self.assertEqual((container["state"]["terminated"]["exitCode"], container["restartCount"]),
                         (3, 2))


class Faults(StandinTest):
    def test_next_requests_of_a_verb_fail(self):
        self.api.fail_next("create", 1, code=500)
        code, body, _ = self.client.request("POST", PODS, fixture("pod.json"))
        self.assertEqual((code, body["kind"], body["reason"], body["code"]),
                         (500, "Status", "InternalError", 500))
        self.create("pods", fixture("pod.json"))
        self.api.fail_next("list", 2, code=429)
        for _ in range(2):
            code, body, headers = self.client.request("GET", PODS)
            self.assertEqual((code, body["reason"], headers.get("Retry-After")),
                             (429, "TooManyRequests", "1"))
        self.assertEqual(len(self.pods()["items"]), 1)
        self.assertEqual(self.client.request("GET", f"{PODS}/vscode-alice")[0], 200)

    def test_bad_requests_are_answered_and_leave_nothing_behind(self):
        for query in ("timeoutSeconds=soon", "resourceVersion=abc", "timeoutSeconds=-1"):
            code, body, _ = self.client.request("GET", f"{PODS}?watch=1&{query}")
            self.assertEqual((code, body["kind"], body["reason"]), (400, "Status", "BadRequest"),
                             query)
        self.assertEqual(self.api.watcher_count(), 0)
        code, body, _ = self.client.request("DELETE", PODS)  # deletecollection: not served
        self.assertEqual((code, body["reason"]), (405, "MethodNotAllowed"))
        code, body, _ = self.client.request("POST", "/api/v1/pods", fixture("pod.json"))
        self.assertEqual((code, body["reason"]), (405, "MethodNotAllowed"))  # needs a namespace
        code, body, _ = self.client.request("POST", PODS, json.loads("[" * 900 + "]" * 900))
        self.assertEqual(code, 400, body)
        deep = "[" * 100000 + "]" * 100000  # deeper than the parser goes
        connection = self.client.connection()
        connection.request("POST", PODS, deep.encode(), self.client.headers())
        response = connection.getresponse()
        self.assertEqual((response.status, json.loads(response.read())["reason"]),
                         (400, "BadRequest"))
        connection.close()
        connection = self.client.connection()  # a body larger than the API's 3 MiB: refused
        connection.putrequest("POST", PODS)
        connection.putheader("Content-Length", str(3 * 1024 * 1024 + 1))
        connection.endheaders()
        response = connection.getresponse()
        self.assertEqual((response.status, json.loads(response.read())["reason"]),
                         (413, "RequestEntityTooLarge"))
        connection.close()
        code, body, _ = self.client.request("POST", "/_standin/fail-next", ["not", "an object"])
        self.assertEqual(code, 400, body)
        self.assertEqual(self.client.request("GET", PODS)[0], 200)  # still serving

    def test_requests_are_recorded(self):
        self.pods(labelSelector="a%3Db")
        self.assertEqual(self.api.requests(), [("GET", PODS, {"labelSelector": "a=b"})])

    def test_loopback_only(self):
        with self.assertRaises(ValueError):
            KubeApiStandin("0.0.0.0:0")


class Token(StandinTest):
    token = "s3cret"

    def test_requests_without_the_token_are_401(self):
        unauthorized = status(401, "Unauthorized", "Unauthorized")
        for token in (None, "wrong"):
            client = Client(self.api, token=token)
            for path in (PODS, "/api/v1", "/version"):
                code, body, _ = client.request("GET", path)
                self.assertEqual((code, body), (401, unauthorized), (token, path))
        self.assertEqual(self.client.request("GET", PODS)[0], 200)
        # the control API needs none
        self.assertEqual(Client(self.api).request("POST", "/_standin/bookmark")[0], 200)

    def test_the_token_rotates(self):
        self.api.set_token("n3w")
        self.assertEqual(self.client.request("GET", PODS)[0], 401)  # the old one
        self.assertEqual(Client(self.api, token="n3w").request("GET", PODS)[0], 200)
        code, _, _ = Client(self.api).request("POST", "/_standin/token", {"token": "n3wer"})
        self.assertEqual(code, 200)
        self.assertEqual(Client(self.api, token="n3w").request("GET", PODS)[0], 401)
        self.assertEqual(Client(self.api, token="n3wer").request("GET", PODS)[0], 200)


def role(*rules, namespace=NS):
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "director-spawner", "namespace": namespace}, "rules": list(rules)}


def rule(resources, verbs, **more):
    return {"apiGroups": [""], "resources": resources, "verbs": verbs, **more}


SPAWNER_USER = "system:serviceaccount:director:director-spawner"


class Rbac(unittest.TestCase):
    """With a Role, only what it grants; everything else 403 Forbidden in the API's words."""

    def standin(self, *rules, namespace=NS, token=None):
        self.api = KubeApiStandin(token=token, role=role(*rules, namespace=namespace), user=SPAWNER_USER).start()
        self.addCleanup(self.api.stop)
        return Client(self.api, token=token)

    def forbidden(self, verb, resource, name=None, namespace=NS):
        kind, _, _ = resource.partition("/")
        what = f'{kind} "{name}"' if name else kind
        where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        return status(403, "Forbidden", f'{what} is forbidden: User "{SPAWNER_USER}" cannot {verb} resource '
                      f'"{resource}" in API group "" {where}', {"name": name, "kind": kind} if name else {"kind": kind})

    def test_a_denied_create_is_the_api_server_s_403(self):
        """Byte for byte the fixture taken from the reference's shape (tests/data/kube-api)."""
        client = self.standin(rule(["pods"], ["get", "list", "watch", "delete"]))
        code, body, _ = client.request("POST", PODS, fixture("pod.json"))
        self.assertEqual((code, body), (403, fixture("status-forbidden.json")))

    def test_verbs_map_as_the_api_server_maps_them(self):
        client = self.standin(rule(["pods"], ["create", "list"]))
        pod = fixture("pod.json")
        self.assertEqual(client.request("POST", PODS, pod)[0], 201)
        name = pod["metadata"]["name"]
        self.assertEqual(client.request("GET", PODS)[0], 200)
        for method, path, verb, body in (
                ("GET", f"{PODS}?watch=1", "watch", None), ("GET", f"{PODS}?watch=true", "watch", None),
                ("GET", f"{PODS}/{name}", "get", None), ("PUT", f"{PODS}/{name}", "update", pod),
                ("PATCH", f"{PODS}/{name}", "patch", {}), ("DELETE", f"{PODS}/{name}", "delete", None)):
            code, answer, _ = client.request(method, path, body, "application/merge-patch+json")
            self.assertEqual((code, answer), (403, self.forbidden(verb, "pods", None if verb == "watch" else name)),
                             (method, path))

    def test_authorization_comes_before_routing(self):
        """What the stand-in does not serve is still 403 first, as the API server answers
        (never a 404 the spawner would take for "absent"): secrets, events, pods/exec, another
        API group, a collection's DELETE (deletecollection); granted, it is then 404 or 405."""
        client = self.standin(rule(["pods"], ["get", "list", "delete"]))
        secrets = f"/api/v1/namespaces/{NS}/secrets"
        cases = (("GET", f"{secrets}/oauth2-proxy", ("get", "", "secrets", "oauth2-proxy")),
                 ("GET", secrets, ("list", "", "secrets", None)),
                 ("GET", f"/api/v1/namespaces/{NS}/events?watch=true", ("watch", "", "events", None)),
                 ("POST", f"{PODS}/vscode-alice/exec", ("create", "", "pods/exec", "vscode-alice")),
                 ("DELETE", PODS, ("deletecollection", "", "pods", None)),
                 ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/director",
                  ("get", "apps", "deployments", "director")))
        for method, path, (verb, group, resource, name) in cases:
            code, body, _ = client.request(method, path, {} if method == "POST" else None)
            kind = resource.partition("/")[0]
            qualified = f"{kind}.{group}" if group else kind
            what = f'{qualified} "{name}"' if name else qualified
            details = {"name": name} if name else {}
            details.update({"group": group} if group else {})
            details["kind"] = kind
            self.assertEqual((code, body), (403, status(403, "Forbidden", f'{what} is forbidden: User "{SPAWNER_USER}" '
                                                        f'cannot {verb} resource "{resource}" in API group "{group}" '
                                                        f'in the namespace "{NS}"', details)), (method, path))
        code, body, _ = client.request("GET", "/metrics")
        self.assertEqual((code, body), (403, status(403, "Forbidden", f'forbidden: User "{SPAWNER_USER}" cannot get '
                                                    f'path "/metrics"', {})))
        # What the Role grants but the stand-in does not serve: after authorization, 404 or 405.
        everything = self.standin(rule(["*"], ["*"]), {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})
        for method, path, code in (("GET", f"{secrets}/oauth2-proxy", 404), ("POST", f"{PODS}/vscode-alice/exec", 404),
                                   ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments", 404),
                                   ("DELETE", PODS, 405)):
            self.assertEqual(everything.request(method, path)[0], code, (method, path))

    def test_watch_and_names_as_the_api_server_reads_them(self):
        """?watch is true unless absent, "0" or "false" (any case), as apimachinery converts
        it; a list or watch whose fieldSelector requires metadata.name=X names X, so a Role's
        resourceNames can allow it; every question asked of the Role is recorded."""
        client = self.standin(rule(["pods"], ["list"]), rule(["services"], ["list", "watch"], resourceNames=["vscode-alice"]))
        for value in ("0", "false", "FALSE"):
            self.assertEqual(client.request("GET", f"{PODS}?watch={value}")[0], 200, value)
        for value in ("1", "true", "", "yes"):
            code, body, _ = client.request("GET", f"{PODS}?watch={value}")
            self.assertEqual((code, body), (403, self.forbidden("watch", "pods")), value)
        services = f"/api/v1/namespaces/{NS}/services"
        self.assertEqual(client.request("GET", f"{services}?fieldSelector=metadata.name%3Dvscode-alice")[0], 200)
        self.assertEqual(client.request("GET", f"{services}?fieldSelector=metadata.name%3D%3Dvscode-bob"),
                         (403, self.forbidden("list", "services", "vscode-bob"), unittest.mock.ANY))
        self.assertEqual(client.request("GET", services)[0], 403)  # no name: all of them
        asked = [(info.verb, info.resources, info.name) for info in self.api.authorized()]
        self.assertEqual(asked[-3:], [("list", "services", "vscode-alice"), ("list", "services", "vscode-bob"),
                                      ("list", "services", None)])
        code, body, _ = Client(self.api).request("GET", "/_standin/authorized")
        self.assertEqual((code, body[-1]), (200, {"verb": "list", "api_group": "", "api_version": "v1",
                                                  "resource": "services", "subresource": None,
                                                  "namespace": NS, "name": None}))

    def test_subresources_are_resources_of_their_own(self):
        client = self.standin(rule(["pods"], ["*"]), rule(["pods/status"], ["get"]))
        pod = fixture("pod.json")
        name = pod["metadata"]["name"]
        self.assertEqual(client.request("POST", PODS, pod)[0], 201)
        self.assertEqual(client.request("GET", f"{PODS}/{name}/status")[0], 200)
        code, body, _ = client.request("GET", f"{PODS}/{name}/log")
        self.assertEqual((code, body), (403, self.forbidden("get", "pods/log", name)))
        code, body, _ = client.request("PUT", f"{PODS}/{name}/status", pod)
        self.assertEqual((code, body), (403, self.forbidden("update", "pods/status", name)))

    def test_only_in_the_role_s_namespace(self):
        client = self.standin(rule(["*"], ["*"]))
        self.assertEqual(client.request("GET", PODS)[0], 200)
        code, body, _ = client.request("GET", "/api/v1/namespaces/other/services")
        self.assertEqual((code, body), (403, self.forbidden("list", "services", namespace="other")))
        code, body, _ = client.request("GET", "/api/v1/persistentvolumeclaims")
        self.assertEqual((code, body), (403, self.forbidden("list", "persistentvolumeclaims", namespace=None)))

    def test_resource_names_and_api_groups(self):
        client = self.standin(rule(["services"], ["*"], resourceNames=["vscode-alice"]),
                              {"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["*"]})
        services = f"/api/v1/namespaces/{NS}/services"
        self.assertEqual(client.request("GET", f"{services}/vscode-alice")[0], 404)  # allowed, not there
        self.assertEqual(client.request("GET", f"{services}/vscode-bob"),
                         (403, self.forbidden("get", "services", "vscode-bob"), unittest.mock.ANY))
        self.assertEqual(client.request("POST", services, fixture("service.json"))[0], 403)  # a create names none
        self.assertEqual(client.request("GET", PODS)[0], 403)  # another API group's rule

    def test_authentication_first_discovery_for_everyone(self):
        client = self.standin(token="t0ken")
        self.assertEqual(Client(self.api, token="wrong").request("GET", PODS)[0], 401)
        self.assertEqual(client.request("GET", PODS)[0], 403)  # a Role without rules
        for path in ("/api", "/api/v1", "/apis", "/version", "/healthz"):
            self.assertEqual(client.request("GET", path)[0], 200, path)

    def test_the_control_api_reads_any_object_whatever_the_role(self):
        client = self.standin(rule(["persistentvolumeclaims"], ["create"]))
        claim = self.create_claim(client)
        name = claim["metadata"]["name"]
        self.assertEqual(client.request("GET", f"/api/v1/namespaces/{NS}/persistentvolumeclaims/{name}")[0], 403)
        code, body, _ = Client(self.api).request("GET", f"/_standin/objects/persistentvolumeclaims/{NS}/{name}")
        self.assertEqual((code, body), (200, claim))
        code, body, _ = Client(self.api).request("GET", f"/_standin/objects/persistentvolumeclaims/{NS}/nobody")
        self.assertEqual((code, body["reason"]), (404, "NotFound"))

    def create_claim(self, client):
        code, body, _ = client.request("POST", f"/api/v1/namespaces/{NS}/persistentvolumeclaims",
                                       fixture("persistentvolumeclaim.json"))
        self.assertEqual(code, 201, body)
        return body

    def test_load_role_from_yaml_or_json(self):
        with tempfile.TemporaryDirectory() as directory:
            wanted = role(rule(["pods"], ["get"]))
            yaml_file = Path(directory, "rendered.yaml")
            yaml_file.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n---\n"
                                 + json.dumps(wanted) + "\n---\nkind: RoleBinding\n")
            self.assertEqual(load_role(yaml_file), wanted)
            json_file = Path(directory, "role.json")
            json_file.write_text(json.dumps({"kind": "List", "items": [wanted]}))
            self.assertEqual(load_role(json_file), wanted)
            json_file.write_text(json.dumps([wanted, wanted]))
            with self.assertRaisesRegex(ValueError, "2 Roles"):
                load_role(json_file)
            json_file.write_text("kind: [Role\n")
            with self.assertRaisesRegex(ValueError, "neither JSON nor YAML"):
                load_role(json_file)
        without_namespace = role()
        del without_namespace["metadata"]["namespace"]
        with self.assertRaisesRegex(ValueError, "no metadata.namespace"):
            KubeApiStandin(role=without_namespace)


class Tls(unittest.TestCase):
    def test_https_with_the_throwaway_ca(self):
        with tempfile.TemporaryDirectory() as directory:
            files = write_throwaway_tls(directory)
            with KubeApiStandin(token="t", tls=(files["cert"], files["key"])) as api:
                self.assertTrue(api.url.startswith("https://127.0.0.1:"))
                code, body, _ = Client(api, token="t", ca=files["ca"]).request("GET", "/api")
                self.assertEqual((code, body["kind"]), (200, "APIVersions"))
                system_cas = Client(api, token="t")
                system_cas.context = ssl.create_default_context()  # not the throwaway CA
                with self.assertRaises(ssl.SSLCertVerificationError):
                    system_cas.request("GET", "/api")
                with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
                    Client(api, token="t").request("GET", "/api")  # plain HTTP to TLS


class AsAProcess(unittest.TestCase):
    """The stand-in as a process (TLS, token file): its control API over HTTP, and Debian's
    kubectl 1.20 driving it with a fresh $HOME and KUBECONFIG that hold no user
    configuration."""

    @classmethod
    def setUpClass(cls):
        cls.kubectl = shutil.which("kubectl")
        assert cls.kubectl, "kubectl is not installed (tools/install-deps.sh: kubernetes-client)"
        cls.directory = tempfile.TemporaryDirectory()
        directory = Path(cls.directory.name)
        cls.tls = write_throwaway_tls(directory)
        (directory / "token").write_text("kubectl-t0ken\n")
        (directory / "home").mkdir()
        (directory / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        cls.env = clean_environment({"HOME": str(directory / "home"),
                                     "KUBECONFIG": str(directory / "kubeconfig")})
        cls.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "kube_api_standin.py"), "--listen",
             "127.0.0.1:0", "--token-file", str(directory / "token"), "--tls-cert",
             cls.tls["cert"], "--tls-key", cls.tls["key"]],
            stdout=subprocess.PIPE, text=True, env=cls.env)
        line = cls.process.stdout.readline()
        assert line.startswith("kube-api stand-in: https://127.0.0.1:"), line
        cls.url = line.split(": ", 1)[1].strip()

    @classmethod
    def tearDownClass(cls):
        cls.process.terminate()
        cls.process.wait(10)
        cls.process.stdout.close()
        cls.directory.cleanup()

    def kubectl_args(self, *args):
        return [self.kubectl, "--server", self.url, "--token", "kubectl-t0ken",
                "--certificate-authority", self.tls["ca"], "--request-timeout", "10s",
                "-n", "kubectl-ns", *args]

    def run_kubectl(self, *args, check=True):
        result = subprocess.run(self.kubectl_args(*args), capture_output=True, text=True,
                                env=self.env, timeout=30)
        if check:
            self.assertEqual(result.returncode, 0, result.stderr)
        return result

    def control(self, path, body=None):
        context = ssl.create_default_context(cafile=self.tls["ca"])
        host, port = self.url.rsplit("/", 1)[1].split(":")
        connection = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
        connection.request("POST", f"/_standin{path}", json.dumps(body or {}).encode())
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        self.assertEqual(response.status, 200, answer)
        return answer

    def test_kubectl_logs_reads_the_log_subresource(self):
        self.run_kubectl("create", "--validate=false", "-f", str(FIXTURES / "pod.yaml"))
        self.addCleanup(self.run_kubectl, "delete", "pod", "vscode-bob", "--grace-period=0",
                        "--force", check=False)
        self.control("/pods/kubectl-ns/vscode-bob/status", {"phase": "Running"})
        self.control("/pods/kubectl-ns/vscode-bob/log", {"text": "first\nsecond\nthird\n"})
        self.assertEqual(self.run_kubectl("logs", "vscode-bob", "--tail=2").stdout,
                         "second\nthird\n")
        self.assertEqual(self.run_kubectl("logs", "vscode-bob", "--limit-bytes=3").stdout, "fir")

    def test_kubectl_create_get_watch_delete(self):
        # --validate=false: kubectl validates against the server's /openapi/v2, which the
        # stand-in does not serve (the reference's schemas are not worth faking here).
        result = self.run_kubectl("create", "--validate=false", "-f", str(FIXTURES / "pod.yaml"))
        self.assertEqual(result.stdout.strip(), "pod/vscode-bob created")
        again = self.run_kubectl("create", "--validate=false", "-f", str(FIXTURES / "pod.yaml"),
                                 check=False)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn('Error from server (AlreadyExists)', again.stderr)

        listed = json.loads(self.run_kubectl("get", "pods", "-o", "json").stdout)
        self.assertEqual([p["metadata"]["name"] for p in listed["items"]], ["vscode-bob"])
        self.assertEqual(listed["items"][0]["status"]["phase"], "Pending")
        phase = self.run_kubectl("get", "pod", "vscode-bob", "-o", "jsonpath={.status.phase}")
        self.assertEqual(phase.stdout, "Pending")
        selected = self.run_kubectl("get", "pods", "-l", "container-director.io/user=bob",
                                    "-o", "name")
        self.assertEqual(selected.stdout.split(), ["pod/vscode-bob"])
        nobody = self.run_kubectl("get", "pods", "-l", "container-director.io/user=carol",
                                  "-o", "name")
        self.assertEqual(nobody.stdout.split(), [])

        # a watch sees the kubelet's change
        watch = subprocess.Popen(self.kubectl_args("get", "pods", "--watch", "-o", "json"),
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 env=self.env)
        output = []
        reader = threading.Thread(target=lambda: output.extend(watch.stdout), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 15
            while '"phase": "Pending"' not in "".join(output):  # the list, printed first
                self.assertLess(time.monotonic(), deadline, "".join(output))
                time.sleep(0.05)
            self.control("/pods/kubectl-ns/vscode-bob/status",
                         {"phase": "Running", "ready": True, "podIP": "10.1.0.9"})
            while '"podIP": "10.1.0.9"' not in "".join(output):
                self.assertLess(time.monotonic(), deadline, "".join(output))
                time.sleep(0.05)
        finally:
            watch.terminate()
            watch.wait(10)
            reader.join(10)
            watch.stdout.close()
        ip = self.run_kubectl("get", "pod", "vscode-bob", "-o", "jsonpath={.status.podIP}")
        self.assertEqual(ip.stdout, "10.1.0.9")

        deleted = self.run_kubectl("delete", "pod", "vscode-bob", "--wait=false")
        self.assertEqual(deleted.stdout.strip(), 'pod "vscode-bob" deleted')
        deadline = time.monotonic() + 10  # the stand-in's kubelet: 0.2 s of termination
        while (gone := self.run_kubectl("get", "pod", "vscode-bob", check=False)).returncode == 0:
            self.assertLess(time.monotonic(), deadline, gone.stdout)
            time.sleep(0.1)
        self.assertIn("NotFound", gone.stderr)

    def api_request(self, method, path, body=None, token="kubectl-t0ken"):
        context = ssl.create_default_context(cafile=self.tls["ca"])
        host, port = self.url.rsplit("/", 1)[1].split(":")
        connection = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        connection.request(method, path, None if body is None else json.dumps(body).encode(),
                           headers)
        return connection, connection.getresponse()

    def test_control_api_over_http(self):
        pods = "/api/v1/namespaces/control-ns/pods"
        connection, response = self.api_request("POST", pods, named(fixture("pod.json"), "p"))
        created = json.loads(response.read())
        connection.close()
        self.assertEqual(response.status, 201, created)
        version = created["metadata"]["resourceVersion"]
        watching, stream = self.api_request(
            "GET", f"{pods}?watch=true&allowWatchBookmarks=true&resourceVersion={version}")
        self.addCleanup(watching.close)
        self.assertEqual(stream.status, 200)
        self.control("/bookmark")
        self.assertEqual(json.loads(stream.readline())["type"], "BOOKMARK")
        self.control("/pods/control-ns/p/status", {"phase": "Running", "podIP": "10.1.0.11"})
        self.assertEqual(json.loads(stream.readline())["object"]["status"]["podIP"], "10.1.0.11")
        failed = self.control("/pods/control-ns/p/node-failure", {})
        self.assertEqual(failed["status"]["phase"], "Failed")
        self.assertEqual(json.loads(stream.readline())["object"]["status"]["phase"], "Failed")
        self.control("/immediate-deletion", {"on": True})
        self.addCleanup(self.control, "/immediate-deletion", {"on": False})
        connection, response = self.api_request("DELETE", f"{pods}/p")
        response.read()
        connection.close()
        event = json.loads(stream.readline())
        self.assertEqual((event["type"], "deletionTimestamp" in event["object"]["metadata"]),
                         ("DELETED", False))
        self.assertEqual(self.control_get("/watchers"), {"watchers": 1})
        self.control("/end-watches")
        self.assertEqual(stream.read(), b"")
        watching, stream = self.api_request("GET", f"{pods}?watch=true")
        self.addCleanup(watching.close)
        self.assertEqual(stream.status, 200)
        self.control("/drop-watches")
        with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
            stream.read()
        self.control("/compact")
        connection, response = self.api_request("GET", f"{pods}?watch=1&resourceVersion={version}")
        expired = json.loads(response.readline())
        connection.close()
        self.assertEqual((expired["type"], expired["object"]["code"],
                          expired["object"]["reason"]), ("ERROR", 410, "Expired"))
        self.control("/fail-next", {"verb": "list", "count": 1, "code": 429})
        connection, response = self.api_request("GET", pods)
        self.assertEqual((response.status, json.loads(response.read())["reason"]),
                         (429, "TooManyRequests"))
        connection.close()
        self.assertIn(["GET", pods, {}], self.control_get("/requests"))

    def control_get(self, path):
        connection, response = self.api_request("GET", f"/_standin{path}", token=None)
        answer = json.loads(response.read())
        connection.close()
        self.assertEqual(response.status, 200, answer)
        return answer

    def test_serviceaccount_dir_is_what_an_in_cluster_client_reads(self):
        with tempfile.TemporaryDirectory() as directory:
            account = Path(directory) / "serviceaccount"
            process = subprocess.Popen(
                [sys.executable, str(ROOT / "tools" / "kube_api_standin.py"), "--listen",
                 "127.0.0.1:0", "--serviceaccount-dir", str(account), "--namespace", "users"],
                stdout=subprocess.PIPE, text=True, env=self.env)
            try:
                url = process.stdout.readline().split(": ", 1)[1].strip()
                self.assertEqual((account / "namespace").read_text(), "users")
                token = (account / "token").read_text()
                base = [self.kubectl, "--server", url, "--certificate-authority",
                        str(account / "ca.crt"), "--request-timeout", "10s", "-n", "users",
                        "get", "pods", "-o", "json"]
                run = lambda *extra: subprocess.run(base + list(extra), capture_output=True,
                                                    text=True, env=self.env, timeout=30)
                listed = run("--token", token)
                self.assertEqual(listed.returncode, 0, listed.stderr)
                self.assertEqual(json.loads(listed.stdout)["items"], [])
                refused = run("--token", token + "x")
                self.assertIn("Unauthorized", refused.stderr)
            finally:
                process.terminate()
                process.wait(10)
                process.stdout.close()

    def test_the_process_listens_on_loopback_only(self):
        refused = subprocess.run([sys.executable, str(ROOT / "tools" / "kube_api_standin.py"),
                                  "--listen", "0.0.0.0:0"], capture_output=True, text=True,
                                 env=self.env, timeout=30)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("loopback only", refused.stderr)

    def test_kubectl_with_a_wrong_token_is_unauthorized(self):
        args = self.kubectl_args("get", "pods")
        args[args.index("kubectl-t0ken")] = "wrong"
        result = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=30)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("Unauthorized", result.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    unittest.main(verbosity=2)
