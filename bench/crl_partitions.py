"""Partitioned CRLs: re-publishing one partition versus the whole-issuer CRL, and openssl on the same sizes.

Setup (printed, not the figure): a fresh CA store (SQLite) whose 'sign' CA has --total listed certificates
(2 % held, the rest revoked; the stored entries of bench/crl_generation.py's populate, byte-identical to
ca_mock.crl.entries.encode_entry), all partitioned with the default CASettings.crl_partition_size: every
partition is fully revoked, the worst case. One more partition (the "worst-case partition") is filled with
entries as long as they can be (20-byte serial, GeneralizedTime revocation date, reason and invalidity
date: 81 bytes each, made by encode_entry itself).

Measured, each in a fresh child process (wall time; CPU; peak RSS from GNU time; the RSS before the call):

  partition        publish(store, settings, 'sign', force=True, partition=P): one fully revoked partition's
                   full and delta CRL, built, signed and stored.
  worst partition  the same on the worst-case partition: its full CRL's size is the bound (< 1 MiB).
  whole issuer     publish(store, settings, 'sign', force=True): the whole-issuer CRL (every entry of the
                   store) and its delta, as before partitions.
  round            after one revocation (its partition and the issuer marked dirty, as change_status does):
                   publish_all_due(), i.e. one round of the background publisher. It must re-publish that
                   partition only (the whole-issuer CRL waits issuer_crl_background_interval_seconds).
  openssl          `openssl ca -gencrl` over an index.txt of one partition's entries, and (unless
                   --no-openssl-whole) over the whole store's.

Every CRL is checked: `openssl crl -CAfile` verifies the signature, cryptography counts its entries, and the
partition's CRL and openssl's list the same serials.

Example: .venv/bin/python bench/crl_partitions.py --total 1000000
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402
import crl_generation  # noqa: E402  (populate, the entry encoder, the openssl configuration, check_crl)

CHILD = r"""
import json, sys, time
from ca_mock.authorities.service import load_hierarchy
from ca_mock.crl.service import publish, publish_all_due
from jpki_common.store import Store
from ca_mock.settings import CASettings

settings = CASettings(data_dir=sys.argv[1])
store = Store(settings.resolved_database_url())
load_hierarchy(store)  # CA keys: read once per process in the server, so outside the timed call
what, partition = sys.argv[2], int(sys.argv[3])
def hwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
rss_before = hwm_mib()
t0, c0 = time.perf_counter(), time.process_time()
if what == "partition":
    done = [publish(store, settings, "sign", force=True, partition=partition)]
elif what == "whole":
    done = [publish(store, settings, "sign", force=True)]
else:
    done = publish_all_due(store, settings)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"s": elapsed, "cpu_s": cpu, "rss_before_mib": rss_before, "hwm_after_mib": hwm_mib(),
                  "published": [[p.authority, p.partition, p.full_entries, p.delta_entries] for p in done]}))
"""


def fill_worst_partition(store, partition: int, size: int, seed: int) -> set[int]:
    """``size`` revoked certificates whose entries are as long as entries get, in their own partition."""
    from sqlalchemy import insert

    from ca_mock.certificates.models import IssuedCertificate
    from ca_mock.crl.entries import encode_entry
    from ca_mock.crl.models import CertificatePartition, CRLPartition

    rng = random.Random(seed)
    worst = dt.datetime(2051, 1, 1, tzinfo=dt.UTC)  # from 2050 on: GeneralizedTime, 2 bytes longer
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    serials: set[int] = set()
    while len(serials) < size:
        serials.add((1 << 158) | rng.getrandbits(158))  # 20 content bytes, the most random_serial_number gives
    rows = [{"serial": format(s, "x"), "authority": "sign", "profile": "phone-signature", "card_serial": None,
             "not_before": now, "not_after": now + dt.timedelta(days=365), "der": b"", "status": "revoked",
             "reason": "cessationOfOperation", "revoked_at": worst, "invalidity_date": worst,
             "status_changed_at": now - dt.timedelta(days=3),
             "crl_entry_der": encode_entry(s, worst, "cessationOfOperation", worst)} for s in serials]
    assert max(len(r["crl_entry_der"]) for r in rows) == 81
    with store.engine.begin() as connection:
        connection.execute(insert(IssuedCertificate.__table__), rows)
        connection.execute(insert(CertificatePartition.__table__),
                           [{"serial": r["serial"], "authority": "sign", "partition": partition} for r in rows])
        connection.execute(insert(CRLPartition.__table__), [{"authority": "sign", "partition": partition,
                                                            "crl_number": 0, "dirty": True}])
    return serials


def partition_everything(store, size: int) -> int:
    """Give every certificate of 'sign' a partition in insertion order (rowid), ``size`` to a partition."""
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO certificate_partitions (serial, authority, partition) "
            f"SELECT serial, authority, (rowid - 1) / {int(size)} FROM certificates WHERE authority = 'sign'")
        count = connection.exec_driver_sql(
            "SELECT COUNT(DISTINCT partition) FROM certificate_partitions").scalar_one()
        connection.exec_driver_sql(
            "INSERT INTO crl_partitions (authority, partition, crl_number, dirty) "
            "SELECT DISTINCT 'sign', partition, 0, 1 FROM certificate_partitions")
    return count


def write_partition_index(store, partition: int, path: Path) -> set[int]:
    from sqlalchemy import text

    with store.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT c.serial, c.not_after, c.revoked_at, c.reason FROM certificates c "
            "JOIN certificate_partitions p ON p.serial = c.serial WHERE p.partition = :p"), {"p": partition}).all()
    utc = lambda v: (v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(v)).replace(  # noqa: E731
        tzinfo=dt.UTC)
    common.write_index(path, (common.index_line(r.serial, utc(r.not_after), f"/CN=bench {r.serial}",
                                                utc(r.revoked_at), r.reason) for r in rows))
    return {int(r.serial, 16) for r in rows}


def child(res, data: Path, what: str, partition: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_CA_")}
    wall, peak, code, out, cpu = common.run_measured([common.PYTHON, "-c", CHILD, str(data), what, str(partition)],
                                                     res, env=env)
    if code != 0:
        raise RuntimeError(f"{what} child failed ({code}): {out[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(wall_s=wall, peak_mib=peak, child_cpu_s=cpu)
    return result


def gencrl(res, work: Path, index_name: str, out_name: str) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    folder = work / f"openssl-{index_name}"
    folder.mkdir()
    os.link(work / "sign.pem", folder / "sign.pem")
    os.link(work / "sign.key", folder / "sign.key")
    for suffix in ("", ".attr"):
        os.replace(work / f"{index_name}{suffix}", folder / f"index.txt{suffix}")
    (folder / "crlnumber").write_text("01\n")
    (folder / "openssl.cnf").write_text(crl_generation.OPENSSL_CNF.format(dir=folder))
    wall, peak, code, out, cpu = common.run_measured(
        ["openssl", "ca", "-gencrl", "-config", str(folder / "openssl.cnf"), "-out", str(folder / "crl.pem")], res)
    if code != 0:
        raise RuntimeError(f"openssl ca -gencrl failed ({code}): {out[-3000:]}")
    der = x509.load_pem_x509_crl((folder / "crl.pem").read_bytes()).public_bytes(serialization.Encoding.DER)
    (work / out_name).write_bytes(der)
    return {"wall_s": wall, "cpu_s": cpu, "peak_mib": peak, "bytes": len(der)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=1_000_000,
                        help="listed certificates of 'sign' in the store (default 1000000)")
    parser.add_argument("--held", type=float, default=0.02, help="fraction held rather than revoked (0.02)")
    parser.add_argument("--no-openssl-whole", dest="openssl_whole", action="store_false",
                        help="skip `openssl ca -gencrl` over the whole store (~20 s at 1M)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (store, CRLs)")
    args = parser.parse_args()

    from cryptography import x509
    from sqlalchemy import select, update

    from ca_mock.authorities.models import Authority
    from ca_mock.crl.models import CRLPartition, PublishedCRL
    from ca_mock.settings import CASettings
    from jpki_common.store import Store

    size = CASettings().crl_partition_size
    print(f"machine: {common.machine_line()}")
    print(f"partition size (CASettings default): {size:,}; store: {args.total:,} listed certificates of 'sign'")
    with common.Resources(keep=args.keep) as res:
        work = res.tempdir("crl-partitions")
        data = work / "ca"
        t0 = time.perf_counter()
        store, _ = common.make_ca(data, "http://127.0.0.1:8100")
        common.export_authority(store, "sign", work)
        info = crl_generation.populate(store, args.total, min(1000, args.total), args.held, work / "whole.txt",
                                       20_000, 2000, args.seed)
        count = partition_everything(store, size)
        worst_partition = count  # the next number
        worst_serials = fill_worst_partition(store, worst_partition, size, args.seed)
        probe = 0  # a fully revoked partition of typical entries
        probe_serials = write_partition_index(store, probe, work / "partition.txt")
        store.dispose()
        print(f"setup (not the figure): {args.total:,} rows in {count:,} partitions + 1 worst-case partition of "
              f"{size:,}, in {time.perf_counter() - t0:.1f} s; {info['checked']:,} sampled entries identical to "
              "encode_entry()", flush=True)

        results = {}
        results["whole"] = child(res, data, "whole")
        results["partition"] = child(res, data, "partition", probe)
        results["partition (2)"] = child(res, data, "partition", probe)
        results["worst partition"] = child(res, data, "partition", worst_partition)
        # One revocation: as change_status leaves it (the partition and the issuer dirty).
        store = Store(f"sqlite:///{data / 'ca.sqlite3'}")
        with store.transaction() as session:
            session.execute(update(CRLPartition).where(CRLPartition.authority == "sign",
                                                       CRLPartition.partition == 1).values(dirty=True))
            session.execute(update(Authority).where(Authority.name == "sign").values(crl_dirty=True))
            # Everything else counts as published, so the round shows only what the revocation costs.
            session.execute(update(CRLPartition).where(CRLPartition.partition != 1).values(
                dirty=False, next_update=dt.datetime.now(dt.UTC) + dt.timedelta(hours=24)))
        for name in ("root", "auth"):  # published once, so the round does not count their first publication
            from ca_mock.crl.service import publish
            publish(store, CASettings(data_dir=data), name, force=True)
        results["round"] = child(res, data, "round")
        with store.sessions() as session:
            def partition_der(p, kind="full"):  # p None: the whole-issuer CRL
                return session.scalars(select(PublishedCRL).where(
                    PublishedCRL.authority == "sign", PublishedCRL.partition == p, PublishedCRL.kind == kind)).one().der
            (work / "partition.der").write_bytes(partition_der(probe))
            (work / "partition-delta.der").write_bytes(partition_der(probe, "delta"))
            (work / "worst.der").write_bytes(partition_der(worst_partition))
            (work / "whole.der").write_bytes(partition_der(None))
            numbers = session.execute(select(CRLPartition.partition, CRLPartition.crl_number)).all()
        store.dispose()
        assert [p[:2] for p in results["round"]["published"]] == [["sign", 1]], results["round"]["published"]

        peers = {"partition": gencrl(res, work, "partition.txt", "openssl-partition.der")}
        if args.openssl_whole:
            peers["whole"] = gencrl(res, work, "whole.txt", "openssl-whole.der")

        sizes = {name: (work / f"{name}.der").stat().st_size for name in ("partition", "worst", "whole")}
        print("checks:")
        print("  partition:        " + crl_generation.check_crl(work / "partition.der", work / "sign.pem", size,
                                                                  probe_serials))
        print("  worst partition:  " + crl_generation.check_crl(work / "worst.der", work / "sign.pem", size,
                                                                  worst_serials))
        print("  whole issuer:     " + crl_generation.check_crl(work / "whole.der", work / "sign.pem",
                                                                  args.total + size, None))
        print("  openssl partition: " + crl_generation.check_crl(work / "openssl-partition.der", work / "sign.pem",
                                                                   size, probe_serials))
        if args.openssl_whole:
            print("  openssl whole:    " + crl_generation.check_crl(work / "openssl-whole.der", work / "sign.pem",
                                                                      args.total, info["serials"]))
        idp = x509.load_der_x509_crl((work / "partition.der").read_bytes()).extensions.get_extension_for_class(
            x509.IssuingDistributionPoint)
        print(f"  partition IDP critical={idp.critical}: {idp.value.full_name[0].value}")
        assert sizes["worst"] < 1 << 20, sizes

        print(f"\nresults ({common.load_line()}):")
        print(f"  {'what':44} {'entries':>9} {'call s':>7} {'CPU s':>6} {'child s':>7} {'peak MiB':>8}"
              f" {'added MiB':>9} {'CRL bytes':>10}")
        rows = [
            ("ours: one partition, publish(partition=P)", size, results["partition"], sizes["partition"]),
            ("ours: same partition again", size, results["partition (2)"], sizes["partition"]),
            ("ours: worst-case partition (81-byte entries)", size, results["worst partition"], sizes["worst"]),
            ("ours: whole-issuer CRL, publish()", args.total + size, results["whole"], sizes["whole"]),
            ("ours: publisher round after one revocation", size, results["round"], sizes["partition"]),
        ]
        for name, entries, r, crl_bytes in rows:
            print(f"  {name:44} {entries:>9,} {r['s']:7.3f} {r['cpu_s']:6.3f} {r['wall_s']:7.2f} {r['peak_mib']:8.1f}"
                  f" {r['peak_mib'] - r['rss_before_mib']:9.1f} {crl_bytes:>10,}")
        for name, peer in peers.items():
            entries = size if name == "partition" else args.total
            print(f"  {'openssl ca -gencrl: ' + name:44} {entries:>9,} {'':>7} {peer['cpu_s']:6.3f}"
                  f" {peer['wall_s']:7.2f} {peer['peak_mib']:8.1f} {'':>9} {peer['bytes']:>10,}")
        print(f"  the round published: {results['round']['published']}")
        print(f"  worst-case partition CRL: {sizes['worst']:,} bytes = {sizes['worst'] / (1 << 20):.3f} MiB"
              f" ({sizes['worst'] / size:.1f} bytes per entry incl. overhead); bound 1 MiB: "
              f"{'met' if sizes['worst'] < 1 << 20 else 'NOT met'}")
        whole, part = results["whole"], results["partition"]
        print(f"  one partition vs whole issuer: {whole['s'] / part['s']:.0f}x less time in the call, "
              f"{whole['cpu_s'] / max(part['cpu_s'], 1e-9):.0f}x less CPU, peak added "
              f"{part['peak_mib'] - part['rss_before_mib']:.1f} vs "
              f"{whole['peak_mib'] - whole['rss_before_mib']:.1f} MiB")
        print(f"  partition CRL numbers after the run: {sorted(numbers)[:4]} ...")
    return 0


if __name__ == "__main__":
    common.run(main)
