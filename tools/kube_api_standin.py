#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server (core/v1 pods, services and persistentvolumeclaims
in namespaces), for testing director-spawner's Kubernetes runtime (issue 12) where no API server
can run. It speaks the real API's paths, JSON, watch stream, resourceVersion, 409 and 410
semantics, as the Kubernetes API reference describes them; it is not a cluster: nothing is
scheduled and no container runs. A test plays the kubelet through the control API.

In a test:

    with KubeApiStandin(token="t0ken", tls=write_throwaway_tls(tmp)) as api:  # 127.0.0.1, free port
        api.url                                       # https://127.0.0.1:PORT
        api.set_pod_status("ns", "vscode-alice", phase="Running", ready=True, pod_ip="10.1.0.7")
        api.node_failure("ns", "vscode-alice")        # phase Failed (deleted=True: just DELETED)
        api.compact()                                 # a watch from an older version gets 410
        api.bookmark()                                # a BOOKMARK to every watcher asking for them
        api.drop_watches()                            # every watch connection closed at once
        api.end_watches()                             # every watch ended cleanly (a timeout)
        api.fail_next("create", 2, code=429)          # the next 2 creates answer 429
        api.immediate_deletion(True)                  # pod deletion: DELETED at once
        api.hold_watches(True)                        # watch streams send nothing until off
        api.set_pod_log("ns", "vscode-alice", "line 1\nline 2\n")  # what pods/NAME/log serves
        api.set_pod_status("ns", "vscode-alice", phase="Pending",  # the container's own state
                           container_state={"waiting": {"reason": "ErrImagePull", "message": "..."}})
        api.set_token("n3w")                          # the token changed (bound tokens rotate)
        api.expire_continue_tokens(1)                 # the next list page by continue: 410 Expired
        api.stick_terminating("ns", "vscode-alice", since=300)  # its node lost: Terminating for good
        api.requests()                                # [(method, path, query), ...] served so far
        api.authorized()                              # [RequestInfo] asked of the Role (with one)
    KubeApiStandin(..., role=load_role("role.yaml"), user="system:serviceaccount:ns:sa")
                                                      # RBAC: only what that Role grants (403)

As a process (the same controls as HTTP under /_standin/, which needs no token):

    tools/kube_api_standin.py --listen 127.0.0.1:6443 --token-file t --tls-cert c --tls-key k
    tools/kube_api_standin.py --serviceaccount-dir d --namespace ns  # d/token, ca.crt, namespace
    tools/kube_api_standin.py ... --role role.yaml --user system:serviceaccount:ns:sa   # RBAC
    curl -X POST -d '{"phase":"Running","ready":true,"podIP":"10.1.0.7"}' \\
         .../_standin/pods/NS/NAME/status             # what the kubelet would report
    curl -X POST -d '{"deleted":false}' .../_standin/pods/NS/NAME/node-failure
    curl -X POST .../_standin/compact   .../_standin/bookmark   .../_standin/drop-watches
    curl -X POST .../_standin/end-watches
    curl -X POST -d '{"verb":"create","count":2,"code":500}' .../_standin/fail-next
    curl -X POST -d '{"on":true}' .../_standin/immediate-deletion
    curl -X POST -d '{"on":true}' .../_standin/hold-watches    # watch streams send nothing until off
    curl -X POST .../_standin/pods/NS/NAME/finish-deletion  # the kubelet stopped it: DELETED
    curl -X POST -d '{"text":"line 1\\n"}' .../_standin/pods/NS/NAME/log  # its container's output
    curl -X POST -d '{"token":"n3w"}' .../_standin/token        # requests need this token now
    curl -X POST -d '{"count":1}' .../_standin/expire-continue
    curl -X POST -d '{"since":300}' .../_standin/pods/NS/NAME/stuck-terminating
    curl .../_standin/requests   .../_standin/watchers   .../_standin/authorized
    curl .../_standin/objects/RESOURCE/NS/NAME   # any object, whatever a Role grants (a test's reads)

The API it serves (https://kubernetes.io/docs/reference/kubernetes-api/, "Workload Resources:
Pod", "Service Resources: Service", "Config and Storage Resources: PersistentVolumeClaim";
https://kubernetes.io/docs/reference/using-api/api-concepts/ for the rest):

- /api/v1/namespaces/{ns}/{pods|services|persistentvolumeclaims}: GET list (labelSelector,
  fieldSelector metadata.name=..., watch), POST create; .../{name}: GET, PUT (replace), PATCH
  (application/merge-patch+json, RFC 7386), DELETE; .../pods/{name}/status: GET, PUT, PATCH of
  the status alone (the main resource ignores status changes, as the API does); .../pods/{name}/log:
  GET, text/plain, what set_pod_log() gave (tailLines: the last lines; limitBytes: at most that
  many bytes of them, from their start, as the reference says: "may not display a complete final
  line"); a pod without a log yet and still Pending: 400 BadRequest "container ... is waiting to
  start" (the kubelet's words). /api/v1/{resource}
  lists and watches all namespaces. Every namespace exists.
- create: 201 with the object, uid, resourceVersion, creationTimestamp, namespace set; pods
  start with status.phase Pending, services get a spec.clusterIP from 10.96.0.1 on and their
  ports protocol TCP and targetPort, claims status.phase Pending. 409 AlreadyExists; 422 Invalid
  for a missing or malformed metadata.name (pods and claims: a DNS-1123 subdomain; services: a
  DNS-1035 label) and for a pod without spec.containers.
- replace: metadata.resourceVersion required (422), stale -> 409 Conflict ("the object has
  been modified"); a merge patch carrying metadata.resourceVersion is checked the same way. A
  write that changes nothing changes no resourceVersion and sends no event.
- delete: 200 with the object; 404 NotFound. A pod is deleted gracefully: its
  metadata.deletionTimestamp (now plus the grace period: when it is to be gone) and
  deletionGracePeriodSeconds set (a MODIFIED event), then, when
  the kubelet would have stopped it (`termination_delay` seconds later, or finish_deletion()),
  removed (DELETED). gracePeriodSeconds=0 (query or DeleteOptions body) or immediate_deletion()
  removes it at once. Services and claims are removed at once.
- errors are Status objects as the API shapes them: {"kind":"Status","apiVersion":"v1",
  "metadata":{},"status":"Failure","message":...,"reason":...,"details":{...},"code":...}
  (reasons NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Unauthorized, Expired,
  MethodNotAllowed, UnsupportedMediaType, RequestEntityTooLarge, InternalError, TooManyRequests).
- resourceVersion: one cluster-wide counter, a decimal string (clients must treat it as opaque:
  api-concepts, "Resource versions"); a list's metadata.resourceVersion is the counter when it
  was built.
- watch (?watch=1|true, resourceVersion, allowWatchBookmarks, timeoutSeconds, labelSelector):
  HTTP/1.1 chunked, one JSON event per line, {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR",
  "object":...}. From the reference's table (api-concepts, "The ResourceVersion parameter"):
  resourceVersion unset is "Get State and Start at Most Recent" and "0" is "Get State and Start
  at Any": "the watch begins with synthetic 'Added' events of all resources instances that exist
  at the starting resource version", then every change after it; here both start at the current
  version. Any other value is "Start at Exact": every change after it, replayed from a bounded
  history (`history` events); older than the history keeps, an ERROR event whose object is a
  Status 410 reason Expired ("too old resource version: R (C)", as the API server sends it
  in-stream after a 200) and the stream ends. With a labelSelector, an object that stops matching
  is DELETED (its previous state, at the new resourceVersion) and one that starts matching is
  ADDED, as the API server's watch cache does. A BOOKMARK object carries only kind, apiVersion and
  metadata.resourceVersion ("Watch bookmarks"); one is sent when a test calls bookmark() (the
  API server sends them on its own, about once a minute). timeoutSeconds ends the stream
  cleanly (the API server's default is 30 to 60 minutes; here, never).
- authentication: with a token, every request but /_standin/ without "Authorization: Bearer
  <token>" gets 401 Unauthorized; with a certificate and key, TLS only.
- authorization (with a Role: role=, --role FILE, a Role manifest in YAML or JSON, alone or
  among other objects): checked after authentication and before routing, as the API server
  does, so a request for anything (served here or not: secrets, events, pods/exec, another API
  group, a collection's DELETE) that no rule of the Role grants gets 403 Forbidden, reason
  Forbidden, with the API server's message ('pods "x" is forbidden: User "U" cannot get resource
  "pods/log" in API group "" in the namespace "ns"'; "deployments.apps" for another group; "at
  the cluster scope" for a request naming no namespace) and details {"name", "group", "kind"}
  (name and group when there are). What is asked is read from the path as the API server's
  request-info resolver reads it (request_info()): /api/VERSION or /apis/GROUP/VERSION, then
  [namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]]; the verbs are the API server's (the
  Authorization docs, "Determine the request verb"): GET of one object get, of a collection list,
  with ?watch watch (true unless "0" or "false", any case, as apimachinery converts booleans);
  POST create; PUT update; PATCH patch; DELETE of one object delete, of a collection
  deletecollection. A list or watch whose fieldSelector requires metadata.name=X names X (the
  resolver does so, and the RBAC docs say resourceNames then apply). A Role grants only in its
  own namespace (metadata.namespace); a rule matches when its apiGroups hold the group or "*",
  its resources the resource, "resource/subresource" or "*", its verbs the verb or "*", and, when
  it has resourceNames, the request names one of them (so never a create or a list or watch
  without that field selector). Discovery and health paths are allowed to everyone (the API
  server's system:discovery and system:public-info-viewer ClusterRoles); any other non-resource
  path is 403 ('forbidden: User "U" cannot get path "/x"'). Then what is not served here is 404
  NotFound (405 MethodNotAllowed for a verb a served resource lacks). authorized() (GET
  /_standin/authorized) lists every question asked of the Role (verb, group, resource,
  subresource, namespace, name), granted or not. Without a Role, everything is allowed.
- discovery: /version, /api (APIVersions), /api/v1 (APIResourceList of the three resources and
  pods/status), /apis (an empty APIGroupList), /healthz, /readyz, /livez; 404 NotFound Status
  for any other path.

What it does NOT do: no scheduling and no kubelet (pods stay Pending until a test says
otherwise; spec.nodeName is never set, and unlike the real API an unscheduled pod is still
deleted gracefully), no admission or quota, no RBAC but one Role (no RoleBindings: the Role is the token's), no
ClusterRoles, no deletecollection (authorized, then 405), no finalizers (claims have no pvc-protection),
no strategic merge patch, JSON patch or server-side apply (415), no set-based label selectors
(in, notin: 400) and no field selector but metadata.name, no generateName, no dryRun, no
consistent paging (a list's limit and continue are served, each page cut from the state of the
moment, not from the first page's snapshot), no resourceVersion for get and list (they always
serve the current state, which is what "Most Recent", "Any" and "Not older than" allow), no
/api/v1/watch/... paths (deprecated: ?watch only; authorized as watch, then 404), no Table or protobuf (JSON only), no
OpenAPI (kubectl needs --validate=false), no other resource or API group, no namespace objects,
no immutability of a pod's spec, no validation beyond what is listed above, and no defaults but
these: a pod's restartPolicy Always and terminationGracePeriodSeconds 30, a service's type
ClusterIP, clusterIP(s) and its ports' protocol and targetPort, a claim's volumeMode Filesystem.
"""

import argparse
import collections
import copy
import datetime
import hmac
import http.server
import ipaddress
import json
import queue
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

from standin_http import StandinServer, ThreadedStandin, tls_handshake, write_chunk

API_VERSION = "v1"
MAX_BODY = 3 * 1024 * 1024  # bytes: the API server's own request body limit (3 MiB)
DEFAULT_HISTORY = 1000  # watch events kept for "Start at Exact"
DEFAULT_TERMINATION_DELAY = 0.2  # seconds from a pod's graceful deletion to its DELETED
DEFAULT_GRACE_PERIOD = 30  # seconds: the API's default terminationGracePeriodSeconds
MAX_REQUESTS_KEPT = 100000  # requests() remembers the latest this many
DEFAULT_USER = "system:serviceaccount:default:default"  # who the token is, in a 403's message
_CLOSE = object()  # queued to a watcher: end its stream cleanly
_DROP = object()  # queued to a watcher: close its connection without ending the stream

# resource (the URL's name) -> (kind, the grammar of its names)
RESOURCES = {
    "pods": ("Pod", "subdomain"),
    "services": ("Service", "label1035"),
    "persistentvolumeclaims": ("PersistentVolumeClaim", "subdomain"),
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SHORT_NAMES = {"pods": ["po"], "services": ["svc"], "persistentvolumeclaims": ["pvc"]}

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_KEY = re.compile(r"([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


# --- Status objects ------------------------------------------------------------------------

class ApiError(Exception):
    """An answer that is a Status object: raised anywhere below, answered by the handler."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.details, self.headers = code, reason, details, headers or {}

    def status(self):
        return status_object(self.code, self.reason, str(self), self.details)


def status_object(code, reason, message, details=None):
    """A failure Status as the API server shapes it (details omitted when it has none)."""
    status = {"kind": "Status", "apiVersion": API_VERSION, "metadata": {}, "status": "Failure",
              "message": message, "reason": reason}
    if details is not None:
        status["details"] = details
    status["code"] = code
    return status


def not_found(resource, name):
    return ApiError(404, "NotFound", f'{resource} "{name}" not found',
                    {"name": name, "kind": resource})


def invalid(kind, name, field, cause_reason, detail):
    """422 Invalid with one cause, worded as the API server words field errors."""
    message = f"{field}: {detail}"
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {message}',
                    {"name": name, "kind": kind,
                     "causes": [{"reason": cause_reason, "message": detail, "field": field}]})


def bad_request(message):
    return ApiError(400, "BadRequest", message)


# --- selectors -----------------------------------------------------------------------------

# --- RBAC: one Role ------------------------------------------------------------------------

class RoleAuthorizer:
    """What one Role (rbac.authorization.k8s.io/v1) lets its holder do, as the API server's RBAC
    authorizer decides it for the resources served here (the module's docstring says how)."""

    def __init__(self, role, user):
        if not isinstance(role, dict) or role.get("kind") != "Role":
            raise ValueError("not a Role manifest")
        self.namespace = (role.get("metadata") or {}).get("namespace")
        if not self.namespace:
            raise ValueError("the Role has no metadata.namespace: a Role grants in its namespace only")
        self.rules = role.get("rules") or []
        self.user = user

    def allows(self, info):
        """Whether a RequestInfo is granted: in the Role's namespace, by a rule naming its API
        group (or "*"), its "resource[/subresource]" (or "*"), its verb (or "*") and, when the
        rule has resourceNames, the name the request carries."""
        if info.namespace != self.namespace:
            return False
        for rule in self.rules:
            if not {info.api_group, "*"} & set(rule.get("apiGroups") or []):
                continue
            resources = rule.get("resources") or []
            if "*" not in resources and info.resources not in resources:
                continue
            verbs = rule.get("verbs") or []
            if "*" not in verbs and info.verb not in verbs:
                continue
            names = rule.get("resourceNames")
            if names and info.name not in names:
                continue
            return True
        return False

    def forbidden(self, info):
        qualified = info.resource if not info.api_group else f"{info.resource}.{info.api_group}"
        what = f'{qualified} "{info.name}"' if info.name else qualified
        where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
        details = {"name": info.name} if info.name else {}
        if info.api_group:
            details["group"] = info.api_group
        details["kind"] = info.resource
        return ApiError(403, "Forbidden", f'{what} is forbidden: User "{self.user}" cannot {info.verb} resource '
                        f'"{info.resources}" in API group "{info.api_group}" {where}', details)

    def forbidden_path(self, method, path):
        """A non-resource path no discovery rule allows (a Role grants none)."""
        return ApiError(403, "Forbidden", f'forbidden: User "{self.user}" cannot {method.lower()} path "{path}"', {})


def load_role(path):
    """The one Role in a file of YAML documents or JSON (an object, or a list of objects)."""
    text = Path(path).read_text()
    try:
        documents = json.loads(text)
    except ValueError:
        import yaml  # python3-yaml, only for a YAML file
        try:
            documents = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: neither JSON nor YAML: {error}") from None
    if isinstance(documents, dict):
        documents = documents.get("items", [documents]) if documents.get("kind") == "List" else [documents]
    roles = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Role"]
    if len(roles) != 1:
        raise ValueError(f"{path}: {len(roles)} Roles (one is needed)")
    return roles[0]


def parse_label_selector(text):
    """An equality-based label selector (api "Labels and Selectors"): comma-separated
    requirements, all of which must hold: `k=v`, `k==v`, `k!=v` (also true without the label),
    `k` (has it), `!k` (has it not). Returns a predicate on a labels dict; ApiError 400 for
    anything else (set-based requirements included)."""
    requirements = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "(" in part or " in " in part or " notin " in part:
            raise bad_request(f"unable to parse requirement: set-based selectors are not "
                              f"supported by the stand-in: {part!r}")
        if "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            op = "!="
        elif "==" in part:
            key, value = (s.strip() for s in part.split("==", 1))
            op = "="
        elif "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
            op = "="
        elif part.startswith("!"):
            key, value, op = part[1:].strip(), None, "!exists"
        else:
            key, value, op = part, None, "exists"
        if not _LABEL_KEY.fullmatch(key) or (value is not None and not _LABEL_VALUE.fullmatch(value)):
            raise bad_request(f"unable to parse requirement: invalid label selector {part!r}")
        requirements.append((op, key, value))

    def matches(labels):
        labels = labels or {}
        for op, key, value in requirements:
            if op == "=" and labels.get(key) != value:
                return False
            if op == "!=" and labels.get(key) == value:
                return False
            if op == "exists" and key not in labels:
                return False
            if op == "!exists" and key in labels:
                return False
        return True
    return matches


def parse_field_selector(text):
    """Only `metadata.name=<name>` (or ==): what a client watching one object sends."""
    names = []
    for part in (text or "").split(","):
        if not part:
            continue
        field, _, value = part.replace("==", "=").partition("=")
        if field != "metadata.name" or not _:
            raise bad_request(f'"{part}" is not a known field selector: the stand-in knows '
                              f'metadata.name only')
        names.append(value)
    return lambda obj: all(obj["metadata"].get("name") == name for name in names)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: objects merge recursively, null removes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now(seconds_ago=0):
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _shortened_deletion(metadata, grace_period):
    """The deletionTimestamp and deletionGracePeriodSeconds of a terminating object (its
    `metadata`) after a deletion with the shorter `grace_period`, or None when that is not
    shorter (or not given)."""
    current = metadata.get("deletionGracePeriodSeconds")
    if grace_period is None or current is None or grace_period >= current:
        return None
    ends = datetime.datetime.strptime(metadata["deletionTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    ends -= datetime.timedelta(seconds=current - grace_period)
    return {"deletionTimestamp": ends.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "deletionGracePeriodSeconds": grace_period}


def _line(obj):
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


# --- the store -----------------------------------------------------------------------------

class _Event:
    __slots__ = ("rv", "type", "resource", "namespace", "object", "previous")

    def __init__(self, rv, type_, resource, namespace, obj, previous):
        self.rv, self.type, self.resource, self.namespace = rv, type_, resource, namespace
        self.object, self.previous = obj, previous


class _Watcher:
    def __init__(self, resource, namespace, labels, fields, bookmarks, connection):
        self.resource, self.namespace = resource, namespace
        self.labels, self.fields, self.bookmarks = labels, fields, bookmarks
        self.connection = connection
        self.queue = queue.Queue()

    def selects(self, obj):
        return (obj is not None and self.labels(obj["metadata"].get("labels"))
                and self.fields(obj))

    def translate(self, event):
        """The event this watcher sees of `event`, or None (the watch cache's rules)."""
        if event.resource != self.resource:
            return None
        if self.namespace is not None and event.namespace != self.namespace:
            return None
        now, before = self.selects(event.object), self.selects(event.previous)
        if event.type == "ADDED":
            return ("ADDED", event.object) if now else None
        if event.type == "DELETED":
            return ("DELETED", event.object) if now else None
        if now and before:
            return ("MODIFIED", event.object)
        if now:
            return ("ADDED", event.object)
        if before:  # no longer selected: its previous state, at the change's version
            gone = copy.deepcopy(event.previous)
            gone["metadata"]["resourceVersion"] = str(event.rv)
            return ("DELETED", gone)
        return None


class KubeApiStandin(ThreadedStandin):
    """The API's state and its HTTP server. Thread-safe: the controls may be called from any
    thread."""

    thread_name = "kube-api-standin"

    def __init__(self, listen="127.0.0.1:0", token=None, tls=None, history=DEFAULT_HISTORY,
                 termination_delay=DEFAULT_TERMINATION_DELAY, role=None, user=DEFAULT_USER):
        """`token`: the bearer token every API request must carry (None: no authentication).
        `role`: a Role manifest (a dict: load_role()) that authorizes every API request (None:
        everything is allowed); `user`: who the token is, as a 403's message names it.
        `tls`: (certificate file, key file), or None for plain HTTP. `history`: watch events
        kept. `termination_delay`: seconds a gracefully deleted pod stays before its DELETED
        (None: until finish_deletion())."""
        host, port = listen.rsplit(":", 1)
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the Kubernetes API stand-in listens on loopback only")
        self.address = (host, int(port))
        self.token, self.tls = token, tls
        self.authorizer = None if role is None else RoleAuthorizer(role, user)
        self.history_size, self.termination_delay = history, termination_delay
        self._lock = threading.Lock()
        self._watches_flowing = threading.Event()  # cleared by hold_watches()
        self._watches_flowing.set()
        self._objects = {}  # (resource, namespace, name) -> object (with kind and apiVersion)
        self._rv = 1
        self._history = collections.deque()  # _Event, oldest first
        self._compacted_through = 1  # a watch from a version older than this gets 410
        self._watchers = []
        self._failures = {}  # verb -> [code, count]
        self._immediate_deletion = False
        self._expire_continue = 0  # list requests by continue token still to answer 410
        self._stuck = set()  # (resource, namespace, name) of pods whose deletion never completes
        self._logs = {}  # (namespace, pod name) -> its container's output (set_pod_log)
        self._next_cluster_ip = 1
        self._requests = collections.deque(maxlen=MAX_REQUESTS_KEPT)
        self._attributes = collections.deque(maxlen=MAX_REQUESTS_KEPT)  # RequestInfo, with a Role
        self._timers = []
        self._server = None

    # --- lifetime (start(), stop(), with: ThreadedStandin) ----------------------------------

    def _make_server(self):
        context = None
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
        return StandinServer(self.address, _handler_for(self), context)

    def _close_connections(self):
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        self.drop_watches()

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://{self.address[0]}:{self.address[1]}"

    # --- the store's operations (each raises ApiError as the API answers) -------------------

    def resource_version(self):
        with self._lock:
            return str(self._rv)

    def create(self, resource, namespace, obj):
        kind, grammar = RESOURCES[resource]
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("the body is not a JSON object with metadata")
        if obj.get("kind", kind) != kind or obj.get("apiVersion", API_VERSION) != API_VERSION:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) and kind "
                              f"({obj.get('kind')}) do not match /api/v1 {resource} ({kind})")
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name")
        _validate_name(kind, grammar, name)
        if metadata.get("namespace", namespace) != namespace:
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        if resource == "pods":
            containers = (obj.get("spec") or {}).get("containers")
            if not containers:
                raise invalid(kind, name, "spec.containers", "FieldValueRequired", "Required value")
        with self._lock:
            key = (resource, namespace, name)
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists',
                               {"name": name, "kind": resource})
            obj["kind"], obj["apiVersion"] = kind, API_VERSION
            for generated in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                metadata.pop(generated, None)
            metadata.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now())
            self._default(resource, obj)
            return self._store("ADDED", key, obj, None)

    def get(self, resource, namespace, name):
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
            if obj is None:
                raise not_found(resource, name)
            return copy.deepcopy(obj)

    def list(self, resource, namespace=None, label_selector="", field_selector=""):
        """(items, the list's resourceVersion)."""
        labels, fields = parse_label_selector(label_selector), parse_field_selector(field_selector)
        with self._lock:
            items = [copy.deepcopy(obj) for (r, ns, _), obj in sorted(self._objects.items())
                     if r == resource and namespace in (None, ns)
                     and labels(obj["metadata"].get("labels")) and fields(obj)]
            return items, str(self._rv)

    def replace(self, resource, namespace, name, obj, subresource=None):
        """PUT: the whole object (or, with subresource "status", its status alone)."""
        kind = RESOURCES[resource][0]
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise bad_request("the body is not a JSON object with metadata")
        if obj["metadata"].get("name", name) != name:
            raise bad_request(f"the name of the object ({obj['metadata'].get('name')}) does not "
                              f"match the name on the URL ({name})")
        rv = obj["metadata"].get("resourceVersion")
        if not rv:
            raise invalid(kind, name, "metadata.resourceVersion", "FieldValueInvalid",
                          "Invalid value: 0x0: must be specified for an update")
        with self._lock:
            current = self._current(resource, namespace, name, rv)
            return self._update(resource, namespace, name, current, obj, subresource)

    def patch(self, resource, namespace, name, patch, subresource=None):
        """A JSON merge patch (RFC 7386); with subresource "status", of the status alone."""
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        with self._lock:
            rv = (patch.get("metadata") or {}).get("resourceVersion")
            current = self._current(resource, namespace, name, rv)
            return self._update(resource, namespace, name, current,
                                merge_patch(current, patch), subresource)

    def delete(self, resource, namespace, name, grace_period=None):
        """The object as it is now deleted: gone (DELETED), or a pod terminating (MODIFIED with
        metadata.deletionTimestamp; DELETED after termination_delay or finish_deletion())."""
        with self._lock:
            key = (resource, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise not_found(resource, name)
            if resource != "pods" or self._immediate_deletion or grace_period == 0:
                return self._remove(key)
            if "deletionTimestamp" in current["metadata"]:
                # Already terminating: unchanged, unless this deletion's grace period is
                # shorter; then, as the API server does, deletionTimestamp moves earlier by the
                # difference (the first deletion's time plus the new grace period).
                earlier = _shortened_deletion(current["metadata"], grace_period)
                if earlier is None:
                    return copy.deepcopy(current)
                shortened = copy.deepcopy(current)
                shortened["metadata"].update(earlier)
                return self._store("MODIFIED", key, shortened, current)
            terminating = copy.deepcopy(current)
            if grace_period is None:
                grace_period = terminating["spec"].get("terminationGracePeriodSeconds",
                                                       DEFAULT_GRACE_PERIOD)
            # When it will be gone: the deletion's time plus its grace period (ObjectMeta).
            terminating["metadata"]["deletionTimestamp"] = _now(-grace_period)
            terminating["metadata"]["deletionGracePeriodSeconds"] = grace_period
            answer = self._store("MODIFIED", key, terminating, current)
            if self.termination_delay is not None:
                timer = threading.Timer(self.termination_delay, self._finish_quietly, key)
                timer.daemon = True
                self._timers = [t for t in self._timers if t.is_alive()] + [timer]
                timer.start()
            return answer

    def finish_deletion(self, namespace, name):
        """The kubelet has stopped a terminating pod: it is removed (DELETED)."""
        with self._lock:
            return self._remove(("pods", namespace, name))

    def stick_terminating(self, namespace, name, since=0):
        """The pod's node is lost: the pod is Terminating (metadata.deletionTimestamp `since`
        seconds ago, the end of its grace period) and stays so, whatever termination_delay,
        until finish_deletion() or a deletion with grace period 0 (kubectl delete --force)."""
        with self._lock:
            key = ("pods", namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise not_found("pods", name)
            self._stuck.add(key)
            terminating = copy.deepcopy(current)
            terminating["metadata"]["deletionTimestamp"] = _now(since)
            terminating["metadata"].setdefault(
                "deletionGracePeriodSeconds",
                terminating["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD))
            return self._store("MODIFIED", key, terminating, current)

    # --- what the kubelet and the node would do ---------------------------------------------

    def set_pod_status(self, namespace, name, phase=None, ready=None, pod_ip=None,
                       container_state=None, restart_count=0):
        """Sets status.phase, the Ready condition (and ContainersReady) and status.podIP/podIPs,
        as the kubelet reports them; returns the pod. `container_state` (a ContainerState:
        {"waiting": {"reason", "message"}}, {"running": {...}} or {"terminated": {"exitCode",
        "reason"}}): status.containerStatuses of the pod's first container becomes it, with
        `restart_count`."""
        status = {}
        if container_state is not None:
            with self._lock:
                current = self._current("pods", namespace, name, None)
                container = current["spec"]["containers"][0]
                status["containerStatuses"] = [{
                    "name": container.get("name", ""), "state": container_state, "lastState": {},
                    "ready": bool(ready), "restartCount": restart_count,
                    "image": container.get("image", ""), "imageID": "",
                    "started": "running" in container_state}]
        if phase is not None:
            status["phase"] = phase
        if pod_ip is not None:
            status["podIP"], status["podIPs"] = pod_ip, [{"ip": pod_ip}]
        with self._lock:
            current = self._current("pods", namespace, name, None)
            if ready is not None:
                value = "True" if ready else "False"
                conditions = [c for c in current.get("status", {}).get("conditions", [])
                              if c.get("type") not in ("Ready", "ContainersReady")]
                for kind in ("ContainersReady", "Ready"):
                    conditions.append({"type": kind, "status": value, "lastProbeTime": None,
                                       "lastTransitionTime": _now()})
                status["conditions"] = conditions
            if phase == "Running" and "startTime" not in current.get("status", {}):
                status["startTime"] = _now()
            return self._update("pods", namespace, name, current,
                                merge_patch(current, {"status": status}), "status")

    def node_failure(self, namespace, name, deleted=False):
        """The pod's node failed: the pod is Failed and not ready (reason NodeLost), or with
        `deleted` just removed (DELETED, as after a forced deletion)."""
        if deleted:
            with self._lock:
                return self._remove(("pods", namespace, name))
        with self._lock:
            current = self._current("pods", namespace, name, None)
            conditions = [dict(c, status="False") if c.get("type") in ("Ready", "ContainersReady")
                          else c for c in current.get("status", {}).get("conditions", [])]
            patch = {"status": {"phase": "Failed", "reason": "NodeLost", "conditions": conditions,
                                "message": "the stand-in's node failed"}}
            return self._update("pods", namespace, name, current, merge_patch(current, patch),
                                 "status")

    # --- watches and the history ------------------------------------------------------------

    def compact(self):
        """Forgets the history: a watch from any version older than now gets 410 Expired."""
        with self._lock:
            self._history.clear()
            self._compacted_through = self._rv

    def bookmark(self):
        """A BOOKMARK at the current version to every watcher that allowed bookmarks."""
        with self._lock:
            for watcher in self._watchers:
                if watcher.bookmarks:
                    watcher.queue.put(self._bookmark_line(watcher.resource))

    def end_watches(self):
        """Ends every watch stream cleanly (its last chunk), as the API server ends each watch
        after its timeout: the client is expected to watch again from the last version it saw."""
        with self._lock:
            watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.queue.put(_CLOSE)

    def drop_watches(self):
        """Closes every watch connection at once, without the stream's last chunk (the client
        sees the connection lost)."""
        with self._lock:
            watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.queue.put(_DROP)
            try:
                watcher.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def watcher_count(self):
        with self._lock:
            return len(self._watchers)

    def wait_watchers(self, count=1, timeout=15.0):
        deadline = time.monotonic() + timeout
        while self.watcher_count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.watcher_count()} watchers, not {count}, after {timeout} s")
            time.sleep(0.02)

    def set_pod_log(self, namespace, name, text):
        """What the pod's container wrote (stdout and stderr), served by .../pods/NAME/log until
        the pod is removed."""
        with self._lock:
            self._current("pods", namespace, name, None)
            self._logs[(namespace, name)] = text

    def pod_log(self, namespace, name, tail_lines=None, limit_bytes=None):
        """GET .../pods/NAME/log: the output's last `tail_lines` lines, then at most `limit_bytes`
        bytes of them."""
        with self._lock:
            pod = self._current("pods", namespace, name, None)
            text = self._logs.get((namespace, name))
            if text is None:
                if pod.get("status", {}).get("phase") == "Pending":
                    container = pod["spec"]["containers"][0].get("name", "")
                    raise bad_request(f'container "{container}" in pod "{name}" is waiting to '
                                      f'start: ContainerCreating')
                text = ""
        if tail_lines is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[len(lines) - tail_lines:] if tail_lines else [])
        data = text.encode()
        if limit_bytes is not None:
            data = data[:limit_bytes]
        return data.decode(errors="replace")

    # --- faults and switches ----------------------------------------------------------------

    def set_token(self, token):
        """From now on every API request must carry this token (None: none): the service
        account's token was rotated."""
        with self._lock:
            self.token = token

    def fail_next(self, verb, count=1, code=500):
        """The next `count` requests of `verb` (get, list, watch, create, update, patch, delete)
        answer `code`: 500 InternalError or 429 TooManyRequests (Retry-After: 1)."""
        if code not in (500, 429):
            raise ValueError("fail_next: code 500 or 429")
        with self._lock:
            self._failures[verb] = [code, count]

    def expire_continue_tokens(self, count=1):
        """The next `count` list requests carrying a continue token answer 410 Expired, as
        when the snapshot the token pages has been compacted away."""
        with self._lock:
            self._expire_continue = count

    def hold_watches(self, on=True):
        """While on, every watch stream sends nothing more: its events wait, in order, until it
        is off (a slow network or API server delaying what a client hears)."""
        if on:
            self._watches_flowing.clear()
        else:
            self._watches_flowing.set()

    def _wait_watches_flowing(self):
        self._watches_flowing.wait()

    def immediate_deletion(self, on=True):
        """While on, a pod's deletion removes it at once (one DELETED, as with grace period 0)."""
        with self._lock:
            self._immediate_deletion = on

    def requests(self):
        """[(method, path, query dict)] of the requests served so far (the latest
        MAX_REQUESTS_KEPT), control API excluded."""
        with self._lock:
            return list(self._requests)

    def authorized(self):
        """With a Role: [RequestInfo] of every resource request it was asked about so far (the
        latest MAX_REQUESTS_KEPT), granted or not: what a client's calls need of a Role."""
        with self._lock:
            return list(self._attributes)

    # --- internals (the lock held) ----------------------------------------------------------

    def _current(self, resource, namespace, name, rv):
        current = self._objects.get((resource, namespace, name))
        if current is None:
            raise not_found(resource, name)
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on {resource} "{name}": the object has '
                           f'been modified; please apply your changes to the latest version and '
                           f'try again', {"name": name, "kind": resource})
        return current

    def _update(self, resource, namespace, name, current, new, subresource):
        kind = RESOURCES[resource][0]
        if subresource == "status":  # the status alone changes
            updated = copy.deepcopy(current)
            updated["status"] = copy.deepcopy(new.get("status", {}))
        else:  # everything but the status and what the server owns
            updated = copy.deepcopy(new)
            updated["kind"], updated["apiVersion"] = kind, API_VERSION
            if "status" in current:
                updated["status"] = copy.deepcopy(current["status"])
            else:
                updated.pop("status", None)
            for owned in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "resourceVersion"):
                if owned in current["metadata"]:
                    updated["metadata"][owned] = current["metadata"][owned]
                else:
                    updated["metadata"].pop(owned, None)
        if updated == current:
            return copy.deepcopy(current)  # no change: no new version, no event
        return self._store("MODIFIED", (resource, namespace, name), updated, current)

    def _store(self, type_, key, obj, previous):
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key] = obj
        self._record(_Event(self._rv, type_, key[0], key[1], copy.deepcopy(obj),
                            copy.deepcopy(previous)))
        return copy.deepcopy(obj)

    def _remove(self, key):
        obj = self._objects.pop(key, None)
        if obj is None:
            raise not_found(key[0], key[2])
        if key[0] == "pods":
            self._logs.pop((key[1], key[2]), None)
        self._stuck.discard(key)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._record(_Event(self._rv, "DELETED", key[0], key[1], copy.deepcopy(obj), None))
        return copy.deepcopy(obj)

    def _finish_quietly(self, resource, namespace, name):
        with self._lock:
            key = (resource, namespace, name)
            if key in self._objects and key not in self._stuck:
                self._remove(key)

    def _record(self, event):
        self._history.append(event)
        if len(self._history) > self.history_size:
            dropped = self._history.popleft()
            self._compacted_through = dropped.rv
        for watcher in self._watchers:
            seen = watcher.translate(event)
            if seen:
                watcher.queue.put(_line({"type": seen[0], "object": seen[1]}))

    def _default(self, resource, obj):
        spec, status = obj.setdefault("spec", {}), obj.setdefault("status", {})
        if resource == "pods":
            spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_PERIOD)
            spec.setdefault("restartPolicy", "Always")
            obj["status"] = {"phase": "Pending"}
        elif resource == "services":
            spec.setdefault("type", "ClusterIP")
            if "clusterIP" not in spec:
                n, self._next_cluster_ip = self._next_cluster_ip, self._next_cluster_ip + 1
                spec["clusterIP"] = str(ipaddress.ip_address("10.96.0.0") + n)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            for port in spec.get("ports", []):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            obj["status"] = {"loadBalancer": {}}
        elif resource == "persistentvolumeclaims":
            spec.setdefault("volumeMode", "Filesystem")
            obj["status"] = {"phase": "Pending"}

    def _bookmark_line(self, resource):
        return _line({"type": "BOOKMARK",
                      "object": {"kind": RESOURCES[resource][0], "apiVersion": API_VERSION,
                                 "metadata": {"resourceVersion": str(self._rv)}}})

    def _watch(self, resource, namespace, query, connection):
        """Registers a watcher: (watcher, the lines it is owed first). Atomic with every change,
        so that it misses none after its starting version."""
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = parse_field_selector(query.get("fieldSelector", ""))
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        rv = query.get("resourceVersion", "")
        with self._lock:
            watcher = _Watcher(resource, namespace, labels, fields, bookmarks, connection)
            if rv in ("", "0"):  # Get State and Start at Most Recent / at Any: both at now
                first = [_line({"type": "ADDED", "object": copy.deepcopy(obj)})
                         for (r, ns, _), obj in sorted(self._objects.items())
                         if r == resource and namespace in (None, ns) and watcher.selects(obj)]
            else:  # Start at Exact
                try:
                    since = int(rv)
                except ValueError:
                    raise bad_request(f'invalid resource version "{rv}"') from None
                if since < self._compacted_through:
                    oldest = self._history[0].rv if self._history else self._rv
                    expired = status_object(410, "Expired",
                                            f"too old resource version: {since} ({oldest})")
                    return None, [_line({"type": "ERROR", "object": expired})]
                first = []
                for event in self._history:
                    seen = event.rv > since and watcher.translate(event)
                    if seen:
                        first.append(_line({"type": seen[0], "object": seen[1]}))
            self._watchers.append(watcher)
            return watcher, first

    def _unwatch(self, watcher):
        with self._lock:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

    def _take_continue_expiry(self):
        with self._lock:
            if self._expire_continue <= 0:
                return False
            self._expire_continue -= 1
            return True

    def _take_failure(self, verb):
        with self._lock:
            failure = self._failures.get(verb)
            if not failure or failure[1] <= 0:
                return None
            failure[1] -= 1
            return failure[0]

    def _log_request(self, method, path, query):
        with self._lock:
            self._requests.append((method, path, query))

    def _log_attributes(self, info):
        with self._lock:
            self._attributes.append(info)

    # --- the HTTP API -----------------------------------------------------------------------

    def _serve(self, method, path, query, headers, body, connection):
        """(status, JSON-able answer, extra headers) or, for a watch, ("watch", watcher, first
        lines, timeout)."""
        if path.startswith("/_standin/"):
            return self._control(method, path[len("/_standin"):], body)
        self._log_request(method, path, query)
        if self.token is not None:
            if not hmac.compare_digest(headers.get("Authorization", "").encode(),
                                       f"Bearer {self.token}".encode()):
                raise ApiError(401, "Unauthorized", "Unauthorized")
        if method == "GET" and path in _DISCOVERY:
            return 200, _DISCOVERY[path](), {}
        if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
            return 200, "ok", {}
        # Authorization before routing, as the API server does: what is asked is parsed from any
        # path the API server would parse (request_info), served here or not.
        info = request_info(method, path, query)
        if self.authorizer is not None:
            if info is None:
                raise self.authorizer.forbidden_path(method, path)
            self._log_attributes(info)
            if not self.authorizer.allows(info):
                raise self.authorizer.forbidden(info)
        route = None if path.startswith(("/api/v1/watch/", "/api/v1/watch?")) else _route(info)
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {})
        resource, namespace, name, subresource = route
        verb = info.verb
        if (verb not in VERBS or (subresource is not None and verb not in ("get", "update", "patch"))
                or (subresource == "log" and verb != "get")
                or (namespace is None and verb != "list" and verb != "watch")
                or (name is None and verb in ("get", "update", "patch", "delete"))):
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource", {})
        failure = self._take_failure(verb)
        if failure == 429:
            raise ApiError(429, "TooManyRequests", "the stand-in was told to refuse this request",
                           {"retryAfterSeconds": 1}, {"Retry-After": "1"})
        if failure == 500:
            raise ApiError(500, "InternalError", "Internal error occurred: the stand-in was told "
                           "to fail this request", {"causes": [{"message": "injected"}]})
        kind = RESOURCES[resource][0]
        if verb == "watch":
            timeout = _timeout_seconds(query.get("timeoutSeconds"))  # before registering
            watcher, first = self._watch(resource, namespace, query, connection)
            return "watch", watcher, first, timeout
        if verb == "list":
            if query.get("continue") and self._take_continue_expiry():
                raise ApiError(410, "Expired", "the continue token is too old for a consistent "
                               "list: start a new list without it (the stand-in was told to "
                               "expire it)", {})
            items, rv = self.list(resource, namespace, query.get("labelSelector", ""),
                                  query.get("fieldSelector", ""))
            for item in items:  # a typed list's items carry no kind or apiVersion
                item.pop("kind", None)
                item.pop("apiVersion", None)
            metadata = {"resourceVersion": rv}
            items = _page(items, query, metadata)
            return 200, {"kind": f"{kind}List", "apiVersion": API_VERSION,
                         "metadata": metadata, "items": items}, {}
        if verb == "get" and subresource == "log":
            return 200, self.pod_log(namespace, name, _optional_count(query, "tailLines"),
                                     _optional_count(query, "limitBytes")), {}
        if verb == "get":
            return 200, self.get(resource, namespace, name), {}
        if verb == "create":
            return 201, self.create(resource, namespace, _json(body)), {}
        if verb == "update":
            return 200, self.replace(resource, namespace, name, _json(body), subresource), {}
        if verb == "patch":
            content_type = headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != "application/merge-patch+json":
                raise ApiError(415, "UnsupportedMediaType",
                               f'the body of the request was in an unknown format - accepted '
                               f'media types include: application/merge-patch+json (the '
                               f'stand-in\'s only one; not "{content_type}")')
            return 200, self.patch(resource, namespace, name, _json(body), subresource), {}
        options = _json(body) if body else {}
        grace = query.get("gracePeriodSeconds", options.get("gracePeriodSeconds")
                          if isinstance(options, dict) else None)
        return 200, self.delete(resource, namespace, name,
                                None if grace is None else int(grace)), {}

    def _control(self, method, path, body):
        """The control API over HTTP: (status, JSON-able answer, headers)."""
        request = _json(body) if body else {}
        if method == "GET" and path == "/requests":
            return 200, [list(r) for r in self.requests()], {}
        if method == "GET" and path == "/authorized":
            return 200, [info._asdict() for info in self.authorized()], {}
        if method == "GET" and path == "/watchers":
            return 200, {"watchers": self.watcher_count()}, {}
        if method == "GET" and path.startswith("/objects/") and len(path.strip("/").split("/")) == 4:
            _, resource, namespace, name = path.strip("/").split("/")
            if resource not in RESOURCES:
                raise not_found(resource, name)
            return 200, self.get(resource, namespace, name), {}
        if method == "POST":
            parts = path.strip("/").split("/")
            if path == "/compact":
                self.compact()
                return 200, {"resourceVersion": self.resource_version()}, {}
            if path == "/bookmark":
                self.bookmark()
                return 200, {}, {}
            if path == "/drop-watches":
                self.drop_watches()
                return 200, {}, {}
            if path == "/end-watches":
                self.end_watches()
                return 200, {}, {}
            if path == "/fail-next":
                self.fail_next(request["verb"], int(request.get("count", 1)),
                               int(request.get("code", 500)))
                return 200, {}, {}
            if path == "/expire-continue":
                self.expire_continue_tokens(int(request.get("count", 1)))
                return 200, {}, {}
            if len(parts) == 4 and parts[0] == "pods" and parts[3] == "stuck-terminating":
                return 200, self.stick_terminating(parts[1], parts[2],
                                                   int(request.get("since", 0))), {}
            if path == "/immediate-deletion":
                self.immediate_deletion(bool(request.get("on", True)))
                return 200, {}, {}
            if path == "/hold-watches":
                self.hold_watches(bool(request.get("on", True)))
                return 200, {}, {}
            if len(parts) == 4 and parts[0] == "pods" and parts[3] == "status":
                return 200, self.set_pod_status(parts[1], parts[2], request.get("phase"),
                                                request.get("ready"), request.get("podIP"),
                                                request.get("containerState"),
                                                int(request.get("restartCount", 0))), {}
            if len(parts) == 4 and parts[0] == "pods" and parts[3] == "node-failure":
                return 200, self.node_failure(parts[1], parts[2],
                                              bool(request.get("deleted"))), {}
            if path == "/token":
                self.set_token(request.get("token"))
                return 200, {}, {}
            if len(parts) == 4 and parts[0] == "pods" and parts[3] == "log":
                self.set_pod_log(parts[1], parts[2], str(request.get("text", "")))
                return 200, {}, {}
            if len(parts) == 4 and parts[0] == "pods" and parts[3] == "finish-deletion":
                return 200, self.finish_deletion(parts[1], parts[2]), {}
        raise ApiError(404, "NotFound", "the stand-in's control API: GET /_standin/requests, "
                       "/_standin/watchers, /_standin/authorized, /_standin/objects/RESOURCE/NS/NAME; POST /_standin/compact, /bookmark, /drop-watches, /end-watches, "
                       "/fail-next, /expire-continue, /immediate-deletion, /hold-watches, /token, "
                       "/pods/NS/NAME/status|node-failure|finish-deletion|stuck-terminating|log", {})


def _validate_name(kind, grammar, name):
    if not name:
        raise invalid(kind, "", "metadata.name", "FieldValueRequired",
                      "Required value: name or generateName is required")
    if grammar == "subdomain":
        if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
            raise invalid(kind, name, "metadata.name", "FieldValueInvalid",
                          f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist '
                          f"of lower case alphanumeric characters, '-' or '.', and must start "
                          f"and end with an alphanumeric character")
    elif len(name) > 63 or not _DNS1035_LABEL.fullmatch(name):
        raise invalid(kind, name, "metadata.name", "FieldValueInvalid",
                      f'Invalid value: "{name}": a DNS-1035 label must consist of lower case '
                      f"alphanumeric characters or '-', start with an alphabetic character, and "
                      f"end with an alphanumeric character")


def _json(body):
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise bad_request(f"the body is not JSON: {error}") from None


def _page(items, query, metadata):
    """The page a list's `limit` and `continue` ask for (api-concepts, "Retrieving large results
    sets in chunks"): at most `limit` items from where `continue` says; metadata.continue (an
    opaque token, here the offset) and remainingItemCount when more follow."""
    limit = _optional_count(query, "limit")
    token = query.get("continue", "")
    try:
        offset = int(token) if token else 0
    except ValueError:
        raise bad_request(f'invalid continue token "{token}"') from None
    if offset < 0 or (token and not limit):
        raise bad_request(f'invalid continue token "{token}"')
    if not limit:
        return items
    page = items[offset:offset + limit]
    if offset + limit < len(items):
        metadata["continue"] = str(offset + limit)
        metadata["remainingItemCount"] = len(items) - offset - limit
    return page


def _optional_count(query, key):
    """A non-negative integer query parameter (tailLines, limitBytes), or None when absent."""
    text = query.get(key)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f'invalid {key} "{text}"') from None
    if value < 0 or (key == "limitBytes" and value == 0):
        raise bad_request(f"{key}: Invalid value: {value}: must be "
                          f"{'greater than 0' if key == 'limitBytes' else 'non-negative'}")
    return value


def _timeout_seconds(text):
    """A watch's timeoutSeconds: None (no timeout) or a non-negative number of seconds."""
    if not text:
        return None
    try:
        seconds = int(text)
    except ValueError:
        raise bad_request(f'invalid timeoutSeconds "{text}"') from None
    if seconds < 0:
        raise bad_request(f'invalid timeoutSeconds "{text}"')
    return seconds


class RequestInfo(collections.namedtuple(
        "RequestInfo", "verb api_group api_version resource subresource namespace name")):
    """What an API request asks for, as the API server's request-info resolver reads it from the
    path and query (k8s.io/apiserver, "Determine the request verb" in the Authorization docs)."""

    @property
    def resources(self):
        """"resource" or "resource/subresource": what a Role's rules name."""
        return self.resource if self.subresource is None else f"{self.resource}/{self.subresource}"


# A namespace's own subresources: /api/v1/namespaces/NAME/status is the namespace's, not a
# resource "status" in namespace NAME.
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}


def request_info(method, path, query):
    """The RequestInfo of a resource request, /api/VERSION/... (the core group) or
    /apis/GROUP/VERSION/...: [namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]], the verb from the
    method (GET of one object get, of a collection list, or watch with ?watch set; POST create;
    PUT update; PATCH patch; DELETE of one object delete, of a collection deletecollection).
    A list or watch whose fieldSelector requires metadata.name=X names X, as the API server's
    resolver does (so a Role's resourceNames can allow it). None for a non-resource path."""
    parts = [part for part in path.strip("/").split("/")]
    if len(parts) >= 3 and parts[0] == "api" and parts[1]:
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis" and parts[1] and parts[2]:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    verb = _METHOD_VERBS.get(method, method.lower())
    if rest[0] == "watch":  # the deprecated /api/v1/watch/... paths (authorized, not served)
        verb, rest = "watch", rest[1:]
    namespace = None
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest or not rest[0]:
        return None
    resource = rest[0]
    name = rest[1] if len(rest) > 1 and rest[1] else None
    subresource = rest[2] if len(rest) > 2 and rest[2] else None
    if name is None and verb == "get":
        verb = "watch" if _query_true(query, "watch") else "list"
        selected = _exact_name(query.get("fieldSelector", ""))
        if selected is not None:
            name = selected
    elif name is None and verb == "delete":
        verb = "deletecollection"
    return RequestInfo(verb, group, version, resource, subresource, namespace, name)


def _query_true(query, key):
    """A boolean query parameter as the API server converts it: absent, "0" or "false" (any
    case) is false, anything else (the empty string too) true (apimachinery's
    Convert_Slice_string_To_bool)."""
    if key not in query:
        return False
    value = query[key]
    return value != "0" and value.lower() != "false"


def _exact_name(field_selector):
    """X when the field selector requires metadata.name=X (or ==), else None."""
    names = set()
    for part in field_selector.split(","):
        field, equals, value = part.replace("==", "=").partition("=")
        if equals and field.strip() == "metadata.name" and not field.endswith("!"):
            names.add(value.strip())
    if len(names) != 1:
        return None
    name = names.pop()
    # The API server takes it only when it could be a path segment.
    return None if name in ("", ".", "..") or "/" in name or "%" in name else name


def _route(info):
    """(resource, namespace or None, name or None, subresource or None) of what is served
    here, or None (404)."""
    if info is None or info.api_group != "" or info.api_version != API_VERSION:
        return None
    if info.resource not in RESOURCES:
        return None
    if info.subresource is not None and (info.resource, info.subresource) not in (("pods", "status"), ("pods", "log")):
        return None
    path_name = info.name if info.verb not in ("list", "watch") else None
    return info.resource, info.namespace, path_name, info.subresource


def _resource_list():
    resources = []
    for resource, (kind, _) in RESOURCES.items():
        resources.append({"name": resource, "singularName": "", "namespaced": True, "kind": kind,
                          "verbs": VERBS, "shortNames": SHORT_NAMES[resource]})
    resources.append({"name": "pods/log", "singularName": "", "namespaced": True,
                      "kind": "Pod", "verbs": ["get"]})
    resources.append({"name": "pods/status", "singularName": "", "namespaced": True,
                      "kind": "Pod", "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "groupVersion": API_VERSION, "resources": resources}


_DISCOVERY = {
    "/version": lambda: {"major": "1", "minor": "20", "gitVersion": "v1.20.0-standin",
                         "gitCommit": "", "gitTreeState": "", "buildDate": "",
                         "goVersion": "", "compiler": "", "platform": "linux/amd64"},
    "/api": lambda: {"kind": "APIVersions", "versions": [API_VERSION],
                     "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                     "serverAddress": "127.0.0.1"}]},
    "/api/v1": _resource_list,
    "/apis": lambda: {"kind": "APIGroupList", "apiVersion": API_VERSION, "groups": []},
}


# --- HTTP ----------------------------------------------------------------------------------

def _handler_for(api):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # seconds a connection may sit idle or half-sent

        def setup(self):
            tls_handshake(self.request)
            super().setup()

        def _handle(self):
            url = urllib.parse.urlsplit(self.path)
            # The first value of each, blank ones kept: as the API server decodes its parameters.
            query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
            try:
                try:
                    body = self._body()
                except (ApiError, ValueError):
                    self.close_connection = True  # the rest of the body is still unread
                    raise
                answer = api._serve(self.command, url.path, query, self.headers, body,
                                    self.connection)
            except ApiError as error:
                self._answer(error.code, error.status(), error.headers)
                return
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
                self._answer(400, status_object(400, "BadRequest", f"bad request: {error!r}"), {})
                return
            except Exception as error:  # a bug of the stand-in: say so, keep serving
                self._answer(500, status_object(500, "InternalError",
                                                f"the stand-in failed: {error!r}"), {})
                raise
            if answer[0] == "watch":
                self._stream(*answer[1:])
            else:
                self._answer(*answer)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def _body(self):
            """The request's body, sent with Content-Length or chunked, at most MAX_BODY bytes."""
            too_large = ApiError(413, "RequestEntityTooLarge",
                                 f"the request body is larger than {MAX_BODY} bytes")
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = bytearray()
                while True:
                    size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return bytes(body)
                    if len(body) + size > MAX_BODY:
                        raise too_large
                    body += self.rfile.read(size)
                    if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                        raise ValueError("a chunk longer than its size")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY or length < 0:
                raise too_large
            return self.rfile.read(length) if length else b""

        def _answer(self, code, obj, headers):
            body = obj.encode() if isinstance(obj, str) else _line(obj)
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(obj, str)
                             else "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, watcher, first, timeout):
            """The watch: 200, chunked, one event per line; ends (last chunk) on the timeout
            or after an ERROR, is cut off by drop_watches()."""
            self.close_connection = True
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-cache, private")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in first:
                    api._wait_watches_flowing()
                    self._chunk(line)
                while watcher is not None:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        break
                    try:
                        line = watcher.queue.get(timeout=wait)
                    except queue.Empty:
                        break
                    if line is _DROP:
                        return
                    if line is _CLOSE:
                        break
                    api._wait_watches_flowing()
                    self._chunk(line)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (OSError, ValueError):  # the peer gone, or the socket shut by drop_watches()
                pass
            finally:
                if watcher is not None:
                    api._unwatch(watcher)

        def _chunk(self, data):
            write_chunk(self.wfile, data)

        def log_message(self, *args):
            pass

    return Handler


# --- throwaway TLS files for tests ---------------------------------------------------------

def write_throwaway_tls(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI in
    `directory` (a test's temporary directory): returns {"ca", "cert", "key"} paths. Valid one
    day; for tests only."""
    directory = Path(directory)
    paths = {name: str(directory / f"{name}.pem") for name in ("ca", "ca-key", "cert", "key", "csr")}
    extensions = directory / "server-ext.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", paths["ca-key"], "-out", paths["ca"], "-days", "1",
        "-subj", "/CN=kube-api-standin test CA")
    run("req", *ec, "-keyout", paths["key"], "-out", paths["csr"], "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", paths["csr"], "-CA", paths["ca"], "-CAkey", paths["ca-key"],
        "-CAcreateserial", "-out", paths["cert"], "-days", "1", "-extfile", str(extensions))
    return {"ca": paths["ca"], "cert": paths["cert"], "key": paths["key"]}


def write_serviceaccount(directory, namespace="default", token=None):
    """What a pod finds in /var/run/secrets/kubernetes.io/serviceaccount (in-cluster
    configuration), written to `directory` for a client under test: `token`, `ca.crt` (a
    throwaway CA, write_throwaway_tls) and `namespace`. Returns {"token": the token, "tls":
    write_throwaway_tls's paths}, what KubeApiStandin(token=..., tls=(cert, key)) serves with."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    token = token or uuid.uuid4().hex
    tls = write_throwaway_tls(directory)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(Path(tls["ca"]).read_bytes())
    (directory / "namespace").write_text(namespace)
    return {"token": token, "tls": tls}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="IP:PORT (loopback only)")
    parser.add_argument("--serviceaccount-dir",
                        help="write token, ca.crt and namespace there, as a pod finds them, and "
                             "serve HTTPS with that token (instead of the next three options)")
    parser.add_argument("--namespace", default="default", help="of --serviceaccount-dir")
    parser.add_argument("--token-file", help="the bearer token every API request must carry")
    parser.add_argument("--tls-cert", help="PEM certificate (with --tls-key: HTTPS)")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--history", type=int, default=DEFAULT_HISTORY, help="watch events kept")
    parser.add_argument("--role", help="a file holding a Role manifest (YAML or JSON): every API "
                                       "request it does not grant gets 403 Forbidden")
    parser.add_argument("--user", default=DEFAULT_USER, help="who the token is (a 403 names it)")
    parser.add_argument("--termination-delay", type=float, default=DEFAULT_TERMINATION_DELAY,
                        help="seconds from a pod's graceful deletion to its DELETED")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.serviceaccount_dir and (args.tls_cert or args.token_file):
        parser.error("--serviceaccount-dir makes its own token and certificate")
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    if args.serviceaccount_dir:
        account = write_serviceaccount(args.serviceaccount_dir, args.namespace)
        token, tls = account["token"], (account["tls"]["cert"], account["tls"]["key"])
    try:
        role = load_role(args.role) if args.role else None
        api = KubeApiStandin(args.listen, token=token, tls=tls, history=args.history,
                             termination_delay=args.termination_delay, role=role, user=args.user)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    api.start()
    print(f"kube-api stand-in: {api.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()


if __name__ == "__main__":
    main()
