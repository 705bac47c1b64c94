"""A single-node Apache Kafka (KRaft, broker + controller) under `<local_dir>/kafka`.

No Docker and no Kafka tarball: Maven resolves the broker jars from Maven Central once
(`infra/kafka/pom.xml`), and the machine's Java 17 runs `kafka.Kafka` from them. The
broker is detached from the CLI (own session, pid file) so it outlives `walletpipe up`.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from infra.exceptions import CommandFailedError, StartupTimeoutError
from infra.processes import (
    apt_install,
    pid_matches,
    read_pid,
    run,
    say,
    spawn_daemon,
    tail,
    terminate,
    wait_for_tcp,
)
from infra.settings import StackSettings

HERE = Path(__file__).resolve().parent / "kafka"
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.yaml"
RESOLVED_MARKER = ".resolved"
TOPIC_CREATE_ATTEMPTS_MAX = 5


@dataclass(frozen=True)
class KafkaPaths:
    root: Path
    libs: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def out_file(self) -> Path:
        return self.logs / "kafka.out"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @classmethod
    def under(cls, local_dir: Path, settings: StackSettings) -> KafkaPaths:
        root = local_dir.resolve() / "kafka"
        libs = settings.kafka_libs_dir.resolve() if settings.kafka_libs_dir else root / "libs"
        return cls(root, libs)


def new_cluster_id() -> str:
    """A KRaft cluster id: a uuid4 in unpadded base64url, like `kafka-storage random-uuid`.

    Kafka never hands out ids starting with '-' (they parse as a command-line flag), so
    neither do we.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def render_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """Broker + controller in one JVM on loopback, replication factor 1 everywhere, sized
    for the 2-core box it shares with every service.

    Topics are only created explicitly (from domain.topics), so a typo in a topic name
    fails loudly instead of creating a stray one-partition topic.

    Threads: the broker's work is a few thousand small requests a second from a dozen
    clients on loopback; two network and two request threads keep both cores busy without
    more threads than cores taking turns on them (Kafka's defaults, 3 and 8, are for a
    server of its own). Background and cleaner threads only run housekeeping here. Nothing
    is fsynced by the broker (no ``log.flush.*``: the OS writes the page cache back, as
    Kafka recommends; a single node with replication factor 1 has no replica to lose
    anyway), and no replica fetcher runs (``num.replica.fetchers`` is moot with one node).
    The clients batch (domain/kafka_clients.py), so requests carry many records.
    """
    return f"""# Written by infra/kafka.py on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
compression.type=producer
log.retention.hours=168
log.segment.bytes=268435456
"""


def ensure_tools(settings: StackSettings) -> None:
    """Java 17 and Maven, installed through apt when missing (as root)."""
    missing = [
        pkg
        for binary, pkg in (
            (settings.java_bin, "openjdk-17-jre-headless"),
            (settings.mvn_bin, "maven"),
        )
        if shutil.which(binary) is None
    ]
    if missing and settings.install_missing_packages:
        apt_install(missing, timeout_s=settings.apt_timeout_s)
    elif missing:
        raise CommandFailedError(f"missing {' '.join(missing)}: run infra/bootstrap.sh")


def ensure_jars(paths: KafkaPaths, settings: StackSettings) -> None:
    """Copy the broker's runtime jars into `libs`, once per version of the pom.

    The marker holds the pom's hash, so bumping kafka.version re-resolves instead of
    leaving two Kafka versions on one classpath.
    """
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    marker = paths.libs / RESOLVED_MARKER
    if marker.exists() and marker.read_text().strip() == pom_hash:
        return
    ensure_tools(settings)
    say("kafka", f"resolving jars from Maven Central into {paths.libs} ...")
    paths.libs.mkdir(parents=True, exist_ok=True)
    # Remove only jars (never the directory: WALLETPIPE_KAFKA_LIBS_DIR may point anywhere).
    for stale in paths.libs.glob("*.jar"):
        stale.unlink()
    run(
        [
            settings.mvn_bin,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={paths.libs}",
            "-DincludeScope=runtime",
        ],
        timeout_s=settings.maven_timeout_s,
        cwd=HERE,
    )
    if not any(paths.libs.glob("kafka_2.13-*.jar")):
        raise CommandFailedError(f"maven finished but no kafka_2.13 jar in {paths.libs}")
    marker.write_text(pom_hash + "\n")


def running_pid(local_dir: Path, settings: StackSettings) -> int | None:
    paths = KafkaPaths.under(local_dir, settings)
    pid = read_pid(paths.pid_file)
    return pid if pid is not None and pid_matches(pid, str(paths.properties)) else None


def start(
    local_dir: Path, port: int, controller_port: int, cluster_id: str, settings: StackSettings
) -> int:
    """Start the broker in the background and return its pid; does not wait for it."""
    paths = KafkaPaths.under(local_dir, settings)
    if (pid := running_pid(local_dir, settings)) is not None:
        say("kafka", f"already running on 127.0.0.1:{port} (pid {pid})")
        return pid
    ensure_jars(paths, settings)
    for directory in (paths.data, paths.logs):
        directory.mkdir(parents=True, exist_ok=True)
    paths.properties.write_text(render_server_properties(port, controller_port, paths.data))
    classpath = f"{paths.libs}/*"
    if not (paths.data / "meta.properties").exists():
        say("kafka", f"formatting storage (cluster id {cluster_id})")
        run(
            [
                settings.java_bin,
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                f"-Dkafka.logs.dir={paths.logs}",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(paths.properties),
            ],
            timeout_s=settings.command_timeout_s,
            cwd=paths.root,
        )
    say("kafka", f"starting broker on 127.0.0.1:{port} (log {paths.logs / 'server.log'})")
    pid = spawn_daemon(
        [
            settings.java_bin,
            f"-Xms{settings.kafka_heap_min_mb}m",
            f"-Xmx{settings.kafka_heap_max_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={paths.logs}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(paths.properties),
        ],
        log_path=paths.out_file,
        cwd=paths.root,
    )
    paths.pid_file.write_text(f"{pid}\n")
    return pid


def wait_ready(
    local_dir: Path, port: int, settings: StackSettings, cluster_id: str | None = None
) -> None:
    """Block until the broker answers a metadata request, or raise with its log tail.

    With ``cluster_id``, the broker answering must be ours: two stacks that pick ports at
    the same moment can race for one, and the loser's services must not talk to the
    winner's broker (they would consume and produce on its topics)."""
    paths = KafkaPaths.under(local_dir, settings)
    deadline = time.monotonic() + settings.kafka_start_timeout_s

    def alive() -> bool:
        return running_pid(local_dir, settings) is not None

    if wait_for_tcp(port, timeout_s=settings.kafka_start_timeout_s, alive=alive):
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        while time.monotonic() < deadline and alive():
            try:
                answered = admin.list_topics(timeout=2.0).cluster_id
            except KafkaException:
                time.sleep(0.5)
                continue
            if cluster_id is not None and answered != cluster_id:
                raise StartupTimeoutError(
                    f"another broker (cluster {answered}, not ours {cluster_id}) answers on "
                    f"127.0.0.1:{port}: another stack took the port; run `up` again to move "
                    f"off it. {paths.logs / 'server.log'}:\n{tail(paths.logs / 'server.log')}"
                )
            say("kafka", f"ready on 127.0.0.1:{port}")
            return
    state = "is still starting" if alive() else "exited"
    raise StartupTimeoutError(
        f"kafka {state} after {settings.kafka_start_timeout_s:.0f}s; "
        f"{paths.logs / 'server.log'}:\n{tail(paths.logs / 'server.log')}\n"
        f"{paths.out_file}:\n{tail(paths.out_file)}"
    )


def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    timeout_s: float,
    configs: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """Create the missing topics (replication factor 1); returns the names created.

    Existing topics are left alone even if their partition count differs: changing it
    would move keys to other partitions and break per-wallet ordering, so we only warn.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created: list[str] = []
    for attempt in range(1, TOPIC_CREATE_ATTEMPTS_MAX + 1):
        existing = admin.list_topics(timeout=timeout_s).topics
        _warn_partition_mismatch(existing, topics)
        missing = [
            NewTopic(
                name,
                num_partitions=count,
                replication_factor=1,
                config=(configs or {}).get(name, {}),
            )
            for name, count in topics.items()
            if name not in existing
        ]
        if not missing:
            break
        retry = False
        futures = admin.create_topics(
            missing, operation_timeout=timeout_s, request_timeout=timeout_s
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                created.append(name)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                if not error.retriable() or attempt == TOPIC_CREATE_ATTEMPTS_MAX:
                    raise
                retry = True
        if not retry:
            break
        time.sleep(1.0)
    if created:
        say("kafka", f"created topics: {', '.join(sorted(created))}")
    return created


def _warn_partition_mismatch(existing: dict, wanted: dict[str, int]) -> None:
    for name, count in wanted.items():
        meta = existing.get(name)
        if meta is not None and len(meta.partitions) != count:
            say(
                "kafka",
                f"WARNING topic {name} has {len(meta.partitions)} partitions, "
                f"domain.topics wants {count}; left unchanged",
            )


def stop(local_dir: Path, settings: StackSettings) -> bool:
    """SIGTERM (controlled shutdown), bounded wait, then SIGKILL. True if it was running."""
    paths = KafkaPaths.under(local_dir, settings)
    pid = running_pid(local_dir, settings)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    say("kafka", f"stopping pid {pid} ...")
    if terminate(pid, marker=str(paths.properties), timeout_s=settings.stop_timeout_s):
        say("kafka", f"pid {pid} ignored SIGTERM for {settings.stop_timeout_s:.0f}s; killed")
    paths.pid_file.unlink(missing_ok=True)
    return True
