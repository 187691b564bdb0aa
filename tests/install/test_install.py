#!/usr/bin/env python3
"""What `cmake --install` gives an operator, checked as an operator would use it
(docs/operations.md, "Installing"). Each check installs the build tree into its own temporary
directory, so the checks may run in parallel:

  layout           the files and where they go, under --prefix and under DESTDIR with /usr;
                   CHANGELOG.md has an entry for the project version
  binaries         the installed programs' --version (the CMake project version) and
                   --check-config, also with every setting of the example environment files
  haproxy BINARY   `haproxy -c` on the installed haproxy.cfg under the example haproxy.env
  systemd          `systemd-analyze verify` of the installed units
  deb              `cpack -G DEB`: the package's files and its Depends
  sandbox          the installed programs under the units' key restrictions, without systemd:
                   the spawner as uid 0 with no capability, on a read-only file system and
                   under the units' system call filter, reaches a real Podman API service's
                   root-owned socket; the agent as nobody, likewise, follows its events
  dockerfiles      each image's build stage configures from the folders its Dockerfile
                   copies, installs its program where the image takes it from, and its
                   HEALTHCHECK's `--health` exists (no image is built: no base image here)

Exit 77 (skipped) when a tool a check needs is absent.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from testing import clean_environment  # noqa: E402

SKIP = 77
HAPROXY_DIR = Path("share/container-director/haproxy")
DOC_DIR = Path("share/doc/container-director")
UNIT_DIR = Path("lib/systemd/system")
PROGRAMS = ("director-agent", "director-spawner")


def run(command, env=None, check=True):
    result = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, command))} exited {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def fail(message):
    sys.exit(f"FAIL: {message}")


def install(args, prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = str(destdir)
    run([args.cmake, "--install", args.build, "--prefix", prefix], env=env)


def files_under(root):
    return {p.relative_to(root).as_posix() for p in Path(root).rglob("*") if not p.is_dir()}


def expected_files(source):
    pages = {f"{HAPROXY_DIR.as_posix()}/pages/{p.name}" for p in (source / "haproxy/pages").iterdir()}
    return pages | {
        "bin/director-agent", "bin/director-spawner",
        f"{HAPROXY_DIR.as_posix()}/haproxy.cfg", f"{HAPROXY_DIR.as_posix()}/spoe.conf",
        f"{DOC_DIR.as_posix()}/CHANGELOG.md",
        f"{DOC_DIR.as_posix()}/examples/director-agent.env",
        f"{DOC_DIR.as_posix()}/examples/director-spawner.env",
        f"{DOC_DIR.as_posix()}/examples/haproxy.env",
        f"{UNIT_DIR.as_posix()}/director-agent.service",
        f"{UNIT_DIR.as_posix()}/director-spawner.service",
    }


def unit_settings(path):
    """The unit's Key=value lines, each key with its values in order."""
    settings = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def check_units(root, bindir, sysconfdir):
    for program in PROGRAMS:
        unit = unit_settings(root / UNIT_DIR / f"{program}.service")
        expect = {"ExecStart": [f"{bindir}/{program}"],
                  "EnvironmentFile": [f"-{sysconfdir}/container-director/{program}.env"],
                  "Restart": ["on-failure"], "RestartPreventExitStatus": ["2"], "KillSignal": ["SIGTERM"],
                  "CapabilityBoundingSet": [""], "NoNewPrivileges": ["yes"], "ProtectSystem": ["strict"]}
        for key, values in expect.items():
            if unit.get(key) != values:
                fail(f"{program}.service: {key} is {unit.get(key)}, expected {values}")
        if "@DIRECTOR_" in (root / UNIT_DIR / f"{program}.service").read_text():
            fail(f"{program}.service: a placeholder was not replaced")


def example_environment(path, skip=("DIRECTOR_CONFIG",)):
    """Every VARIABLE=value of an example environment file, commented out or not (the later
    line wins, as in the file), without the ones naming files that do not exist here."""
    env = {}
    for line in Path(path).read_text().splitlines():
        match = re.fullmatch(r"#?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match and match.group(1) not in skip:
            env[match.group(1)] = match.group(2).strip().strip('"')
    return env


def check_layout(args):
    with tempfile.TemporaryDirectory(prefix="director-install-") as tmp:
        prefix = Path(tmp) / "prefix"
        install(args, prefix)
        found, expected = files_under(prefix), expected_files(args.source)
        if found != expected:
            fail(f"installed files differ: unexpected {sorted(found - expected)}, missing {sorted(expected - found)}")
        for name in ("haproxy.cfg", "spoe.conf", *(f"pages/{p.name}" for p in (args.source / "haproxy/pages").iterdir())):
            if (prefix / HAPROXY_DIR / name).read_bytes() != (args.source / "haproxy" / name).read_bytes():
                fail(f"{HAPROXY_DIR / name} differs from haproxy/{name}")
        for program in PROGRAMS:
            if not os.access(prefix / "bin" / program, os.X_OK):
                fail(f"bin/{program} is not executable")
        # The release procedure (docs/operations.md, "Releasing"): the version has its entry.
        if not re.search(rf"^## {re.escape(args.version)} - \d{{4}}-\d{{2}}-\d{{2}}$",
                         (prefix / DOC_DIR / "CHANGELOG.md").read_text(), re.M):
            fail(f"CHANGELOG.md has no '## {args.version} - YYYY-MM-DD' entry for the project version")
        # The units and haproxy.env name the prefix installed to, not the configured one.
        check_units(prefix, prefix / "bin", prefix / "etc")
        haproxy_env = example_environment(prefix / DOC_DIR / "examples/haproxy.env")
        if haproxy_env["CONFIG"] != str(prefix / HAPROXY_DIR / "haproxy.cfg") or \
                haproxy_env["DIRECTOR_HAPROXY_DIR"] != str(prefix / HAPROXY_DIR):
            fail(f"haproxy.env names {haproxy_env['CONFIG']} and {haproxy_env['DIRECTOR_HAPROXY_DIR']}")

        # A system install (the package's): /usr, with the configuration directory /etc.
        staged = Path(tmp) / "staged"
        install(args, "/usr", destdir=staged)
        found = files_under(staged)
        expected = {f"usr/{f}" for f in expected_files(args.source)}
        if found != expected:
            fail(f"DESTDIR install differs: unexpected {sorted(found - expected)}, missing {sorted(expected - found)}")
        check_units(staged / "usr", "/usr/bin", "/etc")
    print("layout: as documented, under --prefix and under DESTDIR with /usr")


def check_config(program_path, env_overrides):
    result = run([program_path, "--check-config"], env=clean_environment(env_overrides))
    return json.loads(result.stdout)


def check_binaries(args):
    with tempfile.TemporaryDirectory(prefix="director-install-") as tmp:
        prefix = Path(tmp)
        install(args, prefix)
        for program in PROGRAMS:
            path = prefix / "bin" / program
            version = run([path, "--version"]).stdout
            if version != f"{program} {args.version}\n":
                fail(f"{program} --version printed {version!r}, expected the project version {args.version}")
            printed = check_config(path, {})
            if printed.get("version") != args.version:
                fail(f"{program} --check-config says version {printed.get('version')!r}, expected {args.version}")
            # The example environment file, every setting in it taken: all valid.
            example = example_environment(prefix / DOC_DIR / f"examples/{program}.env")
            printed = check_config(path, example)
            from_environment = sorted(k for k, source in printed["sources"].items() if source == "environment")
            if len(from_environment) != len(example):
                fail(f"{program}: {len(example)} settings in examples/{program}.env, "
                     f"{len(from_environment)} taken from the environment: {from_environment}")
            print(f"{program}: --version {args.version}; --check-config takes the {len(example)} settings "
                  f"of examples/{program}.env: {', '.join(from_environment)}")


def check_haproxy(args):
    haproxy = shutil.which(args.haproxy) if not os.path.isabs(args.haproxy) else args.haproxy
    if not haproxy or not os.path.exists(haproxy):
        print(f"skipped: no HAProxy at {args.haproxy}")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="director-install-") as tmp:
        prefix = Path(tmp)
        install(args, prefix)
        example = example_environment(prefix / DOC_DIR / "examples/haproxy.env")
        env = clean_environment(example)
        # -dW: any warning is fatal. The installed files only: the source tree is out of reach.
        result = run([haproxy, "-c", "-dW", "-f", example["CONFIG"]], env=env, check=False)
        output = result.stdout + result.stderr
        if result.returncode != 0 or re.search(r"\[(WARNING|ALERT)\]", output):
            fail(f"{haproxy} -c on the installed files exited {result.returncode}:\n{output}")
        version = run([haproxy, "-v"]).stdout.splitlines()[0]
        print(f"{version}: {example['CONFIG']} valid under examples/haproxy.env: {output.strip()}")
    return 0


def check_systemd(args):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("skipped: no systemd-analyze")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="director-install-") as tmp:
        prefix = Path(tmp)
        install(args, prefix)
        units = [prefix / UNIT_DIR / f"{p}.service" for p in PROGRAMS]
        # verify: syntax, every setting known, the ExecStart binaries exist and are executable.
        result = run([analyze, "verify", *units], check=False)
        output = (result.stdout + result.stderr).strip()
        # Only lines about these units count; a host's own broken units are not ours.
        ours = [line for line in output.splitlines() if any(p in line for p in PROGRAMS)]
        if result.returncode != 0 or ours:
            fail(f"systemd-analyze verify exited {result.returncode}:\n{output}")
        for unit in units:
            security = run([analyze, "security", "--offline=true", unit], check=False)
            overall = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout + security.stderr)
            if not overall:
                fail(f"systemd-analyze security printed no exposure level:\n{security.stdout}{security.stderr}")
            print(f"{unit.name}: verify clean; exposure {overall.group(1)} (systemd-analyze security --offline)")
            limit = {"director-agent.service": 2.0, "director-spawner.service": 4.0}[unit.name]
            if float(overall.group(1)) > limit:
                fail(f"{unit.name}: exposure {overall.group(1)} above {limit}:\n{security.stdout}")
    return 0


def check_deb(args):
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
        if not shutil.which(tool):
            print(f"skipped: no {tool}")
            return SKIP
    with tempfile.TemporaryDirectory(prefix="director-deb-") as tmp:
        run([args.cpack, "-G", "DEB", "--config", Path(args.build) / "CPackConfig.cmake", "-B", tmp])
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            fail(f"cpack made {debs}, expected one .deb")
        deb = debs[0]
        listing = run(["dpkg-deb", "-c", deb]).stdout
        files = {line.split()[-1].lstrip(".").lstrip("/") for line in listing.splitlines() if not line.startswith("d")}
        expected = {f"usr/{f}" for f in expected_files(args.source)}
        if files != expected:
            fail(f"{deb.name} holds other files: unexpected {sorted(files - expected)}, missing {sorted(expected - files)}")
        fields = {name: run(["dpkg-deb", "-f", deb, name]).stdout.strip()
                  for name in ("Package", "Version", "Architecture", "Depends", "Recommends")}
        if fields["Version"] != args.version or fields["Package"] != "container-director":
            fail(f"{deb.name}: package {fields['Package']} version {fields['Version']}")
        # dpkg-shlibdeps' Depends: the C and C++ runtimes and the libraries linked dynamically
        # (c-ares, prometheus-cpp's core; OpenSSL's libssl3 too since the spawner's Kubernetes
        # runtime, not checked here).
        depends = {re.split(r"[ (]", d.strip())[0] for d in fields["Depends"].split(",")}
        for needed in ("libc6", "libstdc++6", "libgcc-s1", "libc-ares2"):
            if needed not in depends:
                fail(f"Depends lacks {needed}: {fields['Depends']}")
        if not any(d.startswith("libprometheus-cpp-core") for d in depends):
            fail(f"Depends lacks libprometheus-cpp-core: {fields['Depends']}")
        # The units inside name /usr/bin and /etc, where the package puts and reads things.
        unpacked = Path(tmp) / "unpacked"
        run(["dpkg-deb", "-x", deb, unpacked])
        check_units(unpacked / "usr", "/usr/bin", "/etc")
        print(f"{deb.name}: {len(files)} files; " + "; ".join(f"{k}: {v}" for k, v in fields.items()))
    return 0


def check_dockerfiles(args):
    for program, folder in (("director-agent", "agent"), ("director-spawner", "spawner")):
        dockerfile = (args.source / folder / "Dockerfile").read_text()
        build_stage = dockerfile.split("\nFROM ")[1]  # after the comments, before the runtime stage
        copied = [line.split()[1:-1] for line in build_stage.splitlines()
                  if line.startswith("COPY ") and "--from" not in line]
        with tempfile.TemporaryDirectory(prefix="director-image-") as tmp:
            context = Path(tmp) / "src"
            context.mkdir()
            for sources in copied:
                for source in sources:
                    target = context / source
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if (args.source / source).is_dir():
                        shutil.copytree(args.source / source, target)
                    else:
                        shutil.copy2(args.source / source, target)
            # The build stage's configure step, as the Dockerfile writes it.
            configure = re.search(r"RUN (cmake -S \. -B /build .*?)\s*\\?\n\s*&& cmake --build",
                                  build_stage, re.S)
            if not configure:
                fail(f"{folder}/Dockerfile: no `cmake -S . -B /build` step")
            words = configure.group(1).replace("\\\n", " ").split()[1:]
            words = [str(Path(tmp) / "build") if w == "/build" else w for w in words]
            result = subprocess.run([args.cmake, *words], cwd=context, capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                fail(f"{folder}/Dockerfile's configure step fails with only what it copies:\n{result.stderr}")
            prefix = re.search(r"-DCMAKE_INSTALL_PREFIX=(\S+)", configure.group(1)).group(1)
        if f"cmake --install /build --component {program}" not in build_stage:
            fail(f"{folder}/Dockerfile does not install the {program} component")
        if f"COPY --from=build {prefix}/bin/{program} " not in dockerfile:
            fail(f"{folder}/Dockerfile does not take {program} from where it installed it ({prefix}/bin)")
        healthcheck = re.search(r'HEALTHCHECK .*CMD \["([^"]+)", "([^"]+)"\]', dockerfile)
        if not healthcheck or healthcheck.group(1) != f"/usr/local/bin/{program}":
            fail(f"{folder}/Dockerfile's HEALTHCHECK does not run /usr/local/bin/{program}")
        help_text = run([Path(args.build) / folder / program, "--help"]).stdout
        if healthcheck.group(2) not in help_text.split():
            fail(f"{program} --help does not list {healthcheck.group(2)}, which its HEALTHCHECK runs")
        print(f"{folder}/Dockerfile: configures from {sum(len(s) for s in copied)} copied paths, installs "
              f"{prefix}/bin/{program}, HEALTHCHECK {healthcheck.group(1)} {healthcheck.group(2)}")
    return 0


def wait_ready(address, process, what, timeout=15.0):
    """Until `address` answers GET /readyz with 200; fail when `process` exits first."""
    from loopback import http_get
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"{what} exited {process.returncode}:\n{process.stderr.read()}")
        try:
            if http_get(address, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    fail(f"{what} not ready on {address} within {timeout} s")


def restrictions(pid):
    """The capability sets, NoNewPrivs and uid of a running process, from /proc."""
    fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":\t" in line)
    return {k: fields[k].strip() for k in ("Uid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs")}


def unit_system_calls():
    """The system calls the units allow, as systemd resolves their lines
    `SystemCallFilter=@system-service` and `SystemCallFilter=~@privileged @resources` (its
    @default set is always allowed), from `systemd-analyze syscall-filter`."""
    groups, current = {}, None
    for line in run(["systemd-analyze", "syscall-filter"]).stdout.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())

    def expand(name):
        return set().union(*(expand(m) if m.startswith("@") else {m} for m in groups[name]))
    return sorted((expand("@system-service") | expand("@default")) - expand("@privileged") - expand("@resources"))


def exec_with_system_call_filter(allowed, command):
    """Load a seccomp filter allowing only `allowed` (any other system call kills the process:
    stricter than the units' SystemCallErrorNumber=EPERM, so that nothing denied goes
    unnoticed), then exec `command`. Runs after setpriv's no_new_privs, as the last step."""
    import ctypes
    seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    kill_process, allow = 0x80000000, 0x7FFF0000
    context = seccomp.seccomp_init(kill_process)
    for name in allowed:
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # names of other architectures resolve to nothing here
            seccomp.seccomp_rule_add(context, allow, number, 0)
    if seccomp.seccomp_load(context) != 0:
        sys.exit("cannot load the seccomp filter")
    os.execv(command[0], command)


def sandboxed(command, prefix, extra_read_only, uid=None):
    """`command` in its own mount namespace where / and the given trees are read-only (like
    ProtectSystem=strict), with no capability and no_new_privs (like CapabilityBoundingSet=
    and NoNewPrivileges=yes), as `uid` if given, under the units' system call filter."""
    filtered = ["/usr/bin/python3", Path(__file__).resolve(), "--exec-with-system-call-filter",
                ",".join(unit_system_calls()), "--", *command]
    remounts = "; ".join(f"mount --bind {d} {d} && mount -o remount,bind,ro {d}"
                         for d in ("/", str(prefix), *map(str, extra_read_only)))
    user = f"--reuid={uid} --regid={uid} --clear-groups " if uid is not None else ""
    script = f"{remounts} && exec setpriv {user}--bounding-set=-all --inh-caps=-all --no-new-privs -- \"$@\""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script, "sh", *map(str, filtered)]


def check_sandbox(args):
    sys.path.insert(0, str(args.source / "tools"))
    import podman
    from loopback import http_get, reserve_port
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        print("skipped: needs root (to make a mount namespace), unshare and setpriv")
        return SKIP
    if podman.available():
        print(f"skipped: {podman.available()}")
        return SKIP
    if not Path("/usr/bin/python3").exists() or not shutil.which("systemd-analyze"):
        print("skipped: needs /usr/bin/python3 (the system call filter's loader) and systemd-analyze")
        return SKIP
    processes, reservations = [], []

    def port():
        """A port on 127.0.0.1, reserved until the end (tools/loopback.py): the programs bind it."""
        reservations.append(reserve_port())
        return reservations[-1].getsockname()[1]

    with tempfile.TemporaryDirectory(prefix="director-sandbox-") as tmp, podman.PodmanService() as runtime:
        prefix = Path(tmp)
        prefix.chmod(0o755)  # for the agent, which runs as nobody
        install(args, prefix)
        os.chmod(runtime.socket, 0o600)  # root's alone, as Docker's and Podman's system sockets
        try:
            spawner_http = ("127.0.0.1", port())
            spawner_env = {**os.environ, "SPAWNER_RUNTIME": f"unix://{runtime.socket}",
                           "SPAWNER_LISTEN": f"127.0.0.1:{port()}",
                           "SPAWNER_HTTP_LISTEN": "%s:%d" % spawner_http, "SPAWNER_IMAGE": podman.TEST_IMAGE}
            spawner = subprocess.Popen(sandboxed([prefix / "bin/director-spawner"], prefix,
                                                 [Path(runtime.socket).parent]),
                                       env=spawner_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            processes.append(spawner)
            wait_ready(spawner_http, spawner, "director-spawner, uid 0 without capabilities")
            status = json.loads(http_get(spawner_http, "/status")[1])
            agent_http = ("127.0.0.1", port())
            agent_env = {**os.environ, "DIRECTOR_LISTEN": f"127.0.0.1:{port()}",
                         "DIRECTOR_HTTP_LISTEN": "%s:%d" % agent_http,
                         "DIRECTOR_EVENT_FEEDS": "http://%s:%d/events" % spawner_http}
            agent = subprocess.Popen(sandboxed([prefix / "bin/director-agent"], prefix, [], uid=65534),
                                     env=agent_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            processes.append(agent)
            wait_ready(agent_http, agent, "director-agent, nobody without capabilities")
            deadline = time.monotonic() + 10
            while json.loads(http_get(agent_http, "/status")[1])["liveness"]["mode"] != "events":
                if time.monotonic() > deadline:
                    fail("the sandboxed agent never followed the sandboxed spawner's events")
                time.sleep(0.1)
            # /status's version is the project's too (--version and --check-config: `binaries`).
            for name, address in (("director-spawner", spawner_http), ("director-agent", agent_http)):
                version = json.loads(http_get(address, "/status")[1])["version"]
                if version != args.version:
                    fail(f"{name}'s /status says version {version}, expected {args.version}")
            for name, process, uid in (("director-spawner", spawner, "0"), ("director-agent", agent, "65534")):
                seen = restrictions(process.pid)
                if seen["Uid"].split()[0] != uid or seen["NoNewPrivs"] != "1" or any(
                        int(seen[k], 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")):
                    fail(f"{name} ran without the restrictions: {seen}")
                if "Seccomp:\t2" not in Path(f"/proc/{process.pid}/status").read_text():
                    fail(f"{name} ran without the system call filter")
                print(f"{name}: uid {uid}, no capability, no_new_privs, read-only file system, "
                      f"the units' system call filter: ready")
            print(f"director-spawner reached {status['configuration']['runtime']} (mode 600, root's); "
                  f"the agent follows its events")
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=15)
            for reservation in reservations:
                reservation.close()
        # The graceful stop ran under the same restrictions: exit 0 (docs/operations.md).
        for process, name in zip(processes, ("director-spawner", "director-agent")):
            if process.returncode != 0:
                fail(f"{name} exited {process.returncode} on SIGTERM in the sandbox:\n{process.stderr.read()}")
    return 0


def main():
    if sys.argv[1:2] == ["--exec-with-system-call-filter"]:  # the last step of sandboxed()
        return exec_with_system_call_filter(sys.argv[2].split(","), sys.argv[4:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True, help="the build tree")
    parser.add_argument("--source", required=True, type=Path, help="the source tree")
    parser.add_argument("--version", required=True, help="the CMake project version")
    parser.add_argument("--cmake", default="cmake")
    parser.add_argument("--cpack", default="cpack")
    parser.add_argument("check", choices=("layout", "binaries", "haproxy", "systemd", "deb", "dockerfiles",
                                              "sandbox"))
    parser.add_argument("haproxy", nargs="?", help="the HAProxy binary, for the haproxy check")
    args = parser.parse_args()
    checks = {"layout": check_layout, "binaries": check_binaries, "haproxy": check_haproxy,
              "systemd": check_systemd, "deb": check_deb, "dockerfiles": check_dockerfiles,
              "sandbox": check_sandbox}
    return checks[args.check](args) or 0


if __name__ == "__main__":
    sys.exit(main())
