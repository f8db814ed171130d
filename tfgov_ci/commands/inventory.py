"""``tfgov-ci inventory import|list|mark-deployed|sync-prometheus``: the fleet's store of every image,
and what runs where."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tfgov_ci.commands import actions, sentence, warn
from tfgov_ci.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from tfgov_ci.commands import Commands, Common, Parser
    from tfgov_ci.inventory.ingest import Stored
    from tfgov_ci.inventory.store import Store

IMPORT = "store build records, or the out directories holding them (record plus SBOM), in the inventory"
LIST = "the images in the inventory, filtered by repository, governed, base, TensorFlow version, decision"
DEPLOYED = "record that an image runs in an environment (for a deploy job); exit 1 if it is not recorded"
STALE = (
    "images not built, deployed or seen running for N days, as archiving candidates (never one "
    "that runs now or the newest of its repository)"
)
DUPLICATES = (
    "snowflakes: groups of images whose locked packages are nearly the same (Jaccard over "
    "name==version), with what they share as a candidate team base"
)
FORECAST = (
    "requests and limits for a repository's next build and its running containers, from its build "
    "history and (with --prometheus) its containers' CPU, memory and GPU memory"
)
REPORT = (
    "the fleet on one static HTML page (no server, nothing fetched): bases, TensorFlow versions, "
    "governance, findings over time, instances, stale images, snowflakes, the newest rescan"
)
SYNC = (
    "store the containers a cluster runs, from kube-state-metrics through Prometheus, and list the "
    "running images the inventory does not know or knows as ungoverned"
)
INVENTORY_HELP = (
    "the inventory database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB "
    "(default: $TFGOV_INVENTORY_URL, else ~/.local/share/tfgov-ci/inventory.sqlite)"
)


def inventory_option(parser: Parser | argparse.ArgumentParser) -> None:
    """``--inventory URL``, which every fleet command takes."""
    parser.add_argument("--inventory", metavar="URL", help=INVENTORY_HELP)


def add(commands: Commands, common: Common) -> None:
    inventory = actions(
        commands,
        common,
        "inventory",
        help="the fleet inventory: import, list, what runs where, stale images, snowflakes, "
        "forecasts, the fleet page",
        description="The store of every image (SQLite by default, PostgreSQL by URL), what runs where "
        "(Prometheus), and what to make of it.",
    )
    imported = inventory.add_parser(
        "import", parents=[common(out_dir=False)], help=IMPORT, description=sentence(IMPORT)
    )
    imported.add_argument(
        "paths", nargs="*", type=Path, metavar="PATH", help="a record.json, or an out directory (.tfgov/out)"
    )
    imported.add_argument(
        "--registry",
        metavar="HOST",
        help="import every image of a registry: governed where its record attestation verifies "
        "with --key, ungoverned otherwise",
    )
    imported.add_argument(
        "--repository",
        action="append",
        metavar="PATTERN",
        help="with --registry: repositories to read, * as a wildcard (repeatable; default: all the "
        "catalog lists; a name without a wildcard needs no catalog API)",
    )
    imported.add_argument(
        "--key", metavar="KEY", help="with --registry: the public key the record attestations verify with"
    )
    imported.add_argument(
        "--sbom", action="store_true", help="with --registry: make an SBOM (syft) of each ungoverned image"
    )
    inventory_option(imported)
    imported.set_defaults(handler=handle_import)

    listed = inventory.add_parser(
        "list", parents=[common(out_dir=False)], help=LIST, description=sentence(LIST)
    )
    listed.add_argument("--repository", metavar="PATTERN", help="repository, * as a wildcard")
    governed = listed.add_mutually_exclusive_group()
    governed.add_argument(
        "--governed", dest="governed", action="store_const", const=True, help="governed only"
    )
    governed.add_argument(
        "--ungoverned", dest="governed", action="store_const", const=False, help="ungoverned only"
    )
    listed.add_argument("--base", metavar="DIGEST|REF", help="built on this base (digest or reference)")
    listed.add_argument(
        "--tensorflow", metavar="VERSION", help="TensorFlow version (a trailing * for a prefix)"
    )
    listed.add_argument("--decision", choices=("allow", "deny", "none"), help="policy decision")
    listed.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    inventory_option(listed)
    listed.set_defaults(handler=handle_list)

    deployed = inventory.add_parser(
        "mark-deployed", parents=[common(out_dir=False)], help=DEPLOYED, description=sentence(DEPLOYED)
    )
    deployed.add_argument("ref", metavar="REF", help="the image: sha256:..., REPO@sha256:... or REPO:TAG")
    deployed.add_argument("environment", metavar="ENV", help="where it now runs (production, staging, ...)")
    inventory_option(deployed)
    deployed.set_defaults(handler=handle_mark_deployed)

    synced = inventory.add_parser(
        "sync-prometheus", parents=[common(out_dir=False)], help=SYNC, description=sentence(SYNC)
    )
    synced.add_argument(
        "--url",
        required=True,
        metavar="URL",
        help="Prometheus' base URL (a bearer token: $TFGOV_PROMETHEUS_TOKEN)",
    )
    synced.add_argument(
        "--cluster", metavar="NAME", help="the cluster's name in the inventory (default: the URL's host:port)"
    )
    synced.add_argument(
        "--since",
        default="1d",
        metavar="DURATION",
        help="how far back the range query looks for first and last seen (30m, 6h, 7d; default 1d)",
    )
    synced.add_argument(
        "--fail-on-ungoverned",
        action="store_true",
        help="exit 1 when a running image is ungoverned or not in the inventory",
    )
    synced.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    inventory_option(synced)
    synced.set_defaults(handler=handle_sync_prometheus)

    stale = inventory.add_parser(
        "stale", parents=[common(out_dir=False)], help=STALE, description=sentence(STALE)
    )
    stale.add_argument(
        "--days", type=int, default=90, metavar="N", help="unused for this many days (default 90)"
    )
    stale.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    inventory_option(stale)
    stale.set_defaults(handler=handle_stale)

    dupes = inventory.add_parser(
        "duplicates", parents=[common(out_dir=False)], help=DUPLICATES, description=sentence(DUPLICATES)
    )
    dupes.add_argument(
        "--threshold",
        type=float,
        default=0.8,
        metavar="J",
        help="the least Jaccard similarity of two alike images, above 0 and at most 1 (default 0.8)",
    )
    dupes.add_argument(
        "--method",
        choices=("auto", "exact", "minhash-lsh"),
        default="auto",
        help="exact over every pair, or datasketch's MinHash LSH (auto: exact up to 1,500 images)",
    )
    dupes.add_argument(
        "--all-images",
        action="store_true",
        help="compare every image (default: the newest of each repository, as builds of one are alike)",
    )
    dupes.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    inventory_option(dupes)
    dupes.set_defaults(handler=handle_duplicates)

    fore = inventory.add_parser(
        "forecast", parents=[common(out_dir=False)], help=FORECAST, description=sentence(FORECAST)
    )
    fore.add_argument("repository", metavar="REPOSITORY", help="as recorded (or its tail: ml/fraud)")
    fore.add_argument(
        "--prometheus", metavar="URL", help="Prometheus' base URL: the running containers' usage too"
    )
    fore.add_argument(
        "--window", default="7d", metavar="DURATION", help="how far back Prometheus is read (default 7d)"
    )
    fore.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    inventory_option(fore)
    fore.set_defaults(handler=handle_forecast)

    report = inventory.add_parser(
        "report", parents=[common(out_dir=False)], help=REPORT, description=sentence(REPORT)
    )
    report.add_argument(
        "--html", type=Path, metavar="FILE", help="write the page here (whole, or not at all)"
    )
    report.add_argument(
        "--format", choices=("text", "json"), default="text", help="json: print the page's data as JSON"
    )
    report.add_argument(
        "--days", type=int, default=90, metavar="N", help="stale: unused for N days (default 90)"
    )
    report.add_argument(
        "--threshold", type=float, default=0.8, metavar="J", help="snowflakes: least Jaccard similarity (0.8)"
    )
    inventory_option(report)
    report.set_defaults(handler=handle_report)


def handle_import(args: argparse.Namespace) -> int:
    from tfgov_ci.inventory.ingest import import_paths
    from tfgov_ci.inventory.store import open_store

    if not args.paths and not args.registry:
        raise UsageError("nothing to import", "name record files or out directories, or --registry HOST")
    if not args.registry and (args.repository or args.key or args.sbom):
        raise UsageError("--repository, --key and --sbom go with --registry HOST")
    with open_store(args.inventory) as store:
        import_paths(store, args.paths, on_stored=_print_stored)
        if args.registry:
            _import_registry(store, args)
        print(f"inventory: {store.shown}")
    return EXIT_OK


def _print_stored(image: Stored) -> None:
    """An image the import has committed, and its warnings, said as it goes (an import that stops
    later has still stored it). A reader that went away (``| head``) does not stop the import."""
    where = image.repository or "(no repository)"
    try:
        print(f"recorded {where}@{image.digest}: {image.packages} packages, {image.findings} findings, "
              f"from {image.source}", flush=True)  # fmt: skip
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the rest goes nowhere
    warn(image.warnings)


def _import_registry(store: Store, args: argparse.Namespace) -> None:
    from tfgov_ci import config as config_mod
    from tfgov_ci.commands import config_path
    from tfgov_ci.inventory.discovery import import_registry

    path = config_path(args)
    registries = config_mod.load(path, getattr(args, "org_config", None)).registries if path.is_file() else {}
    key = args.key if args.key is None or "://" in args.key else str(Path(args.key).resolve())
    if key is None:
        warn(["no --key: no record attestation can be verified, so every image is recorded as ungoverned"])
    found = import_registry(store, args.registry, args.repository or ["*"], registries, key, sbom=args.sbom)
    for image in found.stored:
        kind = "governed" if image.governed else "UNGOVERNED"
        print(f"recorded {image.repository}@{image.digest} ({kind}, tags {', '.join(image.tags)}): "
              f"{len(image.packages)} packages")  # fmt: skip
    for kept in found.kept:
        print(f"kept {kept.by_digest}: in the inventory already (its tags added)")
    warn([w for image in found.stored for w in image.warnings])
    print(f"registry {args.registry}: {sum(i.governed for i in found.stored)} governed, "
          f"{sum(not i.governed for i in found.stored)} ungoverned, {len(found.kept)} kept")  # fmt: skip


def handle_list(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci.inventory.listing import Filters, list_images, render
    from tfgov_ci.inventory.store import open_store

    filters = Filters(args.repository, args.governed, args.base, args.tensorflow, args.decision)
    with open_store(args.inventory) as store, store.reading() as conn:
        images = list_images(conn, filters)
    if args.format == "json":
        print(json.dumps({"schema_version": 1, "images": [m.to_json() for m in images]}, indent=2))
    else:
        print("\n".join(render(images)))
    return EXIT_OK


def handle_mark_deployed(args: argparse.Namespace) -> int:
    from tfgov_ci.inventory.deployments import mark_deployed
    from tfgov_ci.inventory.store import open_store

    with open_store(args.inventory) as store, store.writing() as conn:
        digest = mark_deployed(conn, args.ref, args.environment)
    print(f"{args.ref} ({digest}) is deployed in {args.environment}")
    return EXIT_OK


def handle_sync_prometheus(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci.errors import EXIT_GATE
    from tfgov_ci.inventory import instances
    from tfgov_ci.inventory.prometheus import Prometheus
    from tfgov_ci.inventory.store import open_store

    prometheus = Prometheus.of(args.url)
    since = instances.seconds(args.since)
    cluster = instances.cluster_name(prometheus, args.cluster)
    seen = instances.observe(prometheus, cluster, since)  # asked before the store is opened for writing
    with open_store(args.inventory) as store, store.writing() as conn:
        synced = instances.store(conn, seen)
    if args.format == "json":
        print(json.dumps(synced.to_json(), indent=2))
    else:
        print("\n".join(instances.render(synced)))
    if synced.skipped:
        warn([f"{len(synced.skipped)} {instances.METRIC} series skipped (listed above)"])
    failing = args.fail_on_ungoverned and (synced.unknown or synced.ungoverned)
    return EXIT_GATE if failing else EXIT_OK


def handle_stale(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci.inventory.stale import render, stale
    from tfgov_ci.inventory.store import open_store

    if args.days < 1:
        raise UsageError(f"--days {args.days}: a number of days, 1 or more")
    with open_store(args.inventory) as store, store.reading() as conn:
        result = stale(conn, args.days)
    print(json.dumps(result.to_json(), indent=2) if args.format == "json" else "\n".join(render(result)))
    return EXIT_OK


def handle_duplicates(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci.inventory.duplicates import duplicates, render
    from tfgov_ci.inventory.store import open_store

    if not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold {args.threshold:g}: a Jaccard similarity above 0 and at most 1")
    with open_store(args.inventory) as store, store.reading() as conn:
        result = duplicates(conn, args.threshold, every_image=args.all_images, method=args.method)
    print(json.dumps(result.to_json(), indent=2) if args.format == "json" else "\n".join(render(result)))
    return EXIT_OK


def handle_forecast(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci.inventory.forecast import forecast, render
    from tfgov_ci.inventory.instances import seconds
    from tfgov_ci.inventory.prometheus import Prometheus
    from tfgov_ci.inventory.store import open_store

    window = seconds(args.window, "--window")
    prometheus = Prometheus.of(args.prometheus) if args.prometheus else None
    with open_store(args.inventory) as store, store.reading() as conn:
        result = forecast(conn, args.repository, prometheus, window, args.window)
    print(json.dumps(result.to_json(), indent=2) if args.format == "json" else "\n".join(render(result)))
    return EXIT_OK


def handle_report(args: argparse.Namespace) -> int:
    import json

    from tfgov_ci._files import atomic_write_text
    from tfgov_ci.inventory import report
    from tfgov_ci.inventory.store import open_store

    if args.html is None and args.format != "json":
        raise UsageError(
            "nothing to report to", "give --html FILE (the page), --format json (its data), or both"
        )
    if args.days < 1:
        raise UsageError(f"--days {args.days}: a number of days, 1 or more")
    if not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold {args.threshold:g}: a Jaccard similarity above 0 and at most 1")
    if args.html is not None and not args.html.parent.is_dir():
        raise UsageError(f"--html {args.html}: no folder {args.html.parent}", "make the folder first")
    with open_store(args.inventory) as store, store.reading() as conn:
        data = report.gather(conn, days=args.days, threshold=args.threshold, shown=store.shown)
    if args.html is not None:
        atomic_write_text(args.html, report.html(data))
        if args.format != "json":
            groups = len(data["duplicates"]["groups"])
            print(f"wrote {args.html}: {data['images']} images, {len(data['stale']['images'])} stale, "
                  f"{groups} snowflake group{'s' if groups != 1 else ''}")  # fmt: skip
    if args.format == "json":
        print(json.dumps(data, indent=2))
    return EXIT_OK
