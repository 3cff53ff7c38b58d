"""Full CRL generation: ca_mock.crl.service.publish() versus `openssl ca -gencrl`, same entries.

For each size N (--sizes), a fresh CA store gets N listed certificates of the 'sign' CA, bulk-inserted
into the `certificates` table (status revoked or held, reason, revocation time, and the stored DER CRL
entry that publish() concatenates). Setup time is printed but is not the figure. Then, each in a fresh
child process, measured with os.wait4 (wall time and that child's own peak RSS):

  ours     publish(store, settings, 'sign', force=True): reads the stored entries, signs a full CRL
           AND a delta CRL (publish always makes both), and stores both in the database.
           The child also reports the time of the publish() call alone, without interpreter start and
           imports, and its RSS before the call (interpreter + imports).
  openssl  `openssl ca -gencrl` over an index.txt with the same serials as R lines, the same CA
           certificate and key (exported from the store), SHA-256, authorityKeyIdentifier + crlNumber.

Both CRLs are then checked: `openssl crl -inform DER -noout` parses them and verifies the signature
against the CA certificate, cryptography's load_der_x509_crl counts the entries, and the two CRLs must
list exactly the same serials.

Example: .venv/bin/python bench/crl_generation.py --sizes 100000,1000000
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as common  # noqa: E402

REASONS = ("keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation", "unspecified")

CHILD = r"""
import json, sys, time
t_start = time.perf_counter()
from ca_mock.authorities.service import load_hierarchy
from ca_mock.crl.service import publish
from jpki_common.store import Store
from ca_mock.settings import CASettings

settings = CASettings(data_dir=sys.argv[1])
store = Store(settings.resolved_database_url())
load_hierarchy(store)  # CA keys: read once per process in the server, so outside the timed call
def hwm_mib():  # this process's own peak RSS since exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
rss_before = hwm_mib()
t0, c0 = time.perf_counter(), time.process_time()
publication = publish(store, settings, "sign", force=True)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({
    "publish_s": elapsed, "publish_cpu_s": cpu, "startup_s": t0 - t_start, "rss_before_mib": rss_before,
    "hwm_after_mib": hwm_mib(),
    "full_entries": publication.full_entries, "delta_entries": publication.delta_entries,
    "number": publication.number,
}))
"""

# Where publish()'s time goes: the same steps, timed one by one (a second child; not the figure).
CHILD_STEPS = r"""
import datetime as dt
import json
import sys
import time

from sqlalchemy import select, update

from ca_mock.authorities.service import load_hierarchy
from ca_mock.crl import service as crl
from jpki_common.store import Store
from ca_mock.settings import CASettings

settings = CASettings(data_dir=sys.argv[1])
store = Store(settings.resolved_database_url())
hierarchy = load_hierarchy(store)
issuer, url = hierarchy.get("sign"), hierarchy.public_url
steps = {}


def hwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


def step(name, fn):
    t0 = time.perf_counter()
    value = fn()
    steps[name] = time.perf_counter() - t0
    steps[name + " (peak RSS MiB so far)"] = hwm_mib()
    return value


idle = step("idle round: publish() with nothing changed (background publisher, every 2 s per issuer)",
            lambda: crl.publish(store, settings, "sign"))
assert idle is None, idle
number, base_number, base_time, now = step(
    "reserve number (locked step; reads the last full CRL's nextUpdate)",
    lambda: crl._reserve_number(store, settings, "sign", None, True))
full_der, full_count = step("read full entries (driver-level SELECT crl_entry_der, concatenate)",
                            lambda: crl._full_entries(store, "sign"))
with store.sessions() as session:
    delta_der, delta_count = step("read delta entries (columns of the certificates changed since base)",
                                  lambda: crl._delta_entries(session, "sign", base_time))
next_update = now + dt.timedelta(hours=settings.crl_validity_hours)
full = step("build + sign full CRL (asn1crypto wrap, dump, RSA sign)",
            lambda: crl.build_crl(issuer, full_der, number, now, next_update, url))
delta = step("build + sign delta CRL",
             lambda: crl.build_crl(issuer, delta_der, number, now, next_update, url, delta_base=base_number))


def store_both():  # publish()'s last transaction, as written there
    with store.transaction() as session:
        crl._numbering(session, "sign", None, lock=True)
        for kind, der, count, base in (("full", full, full_count, None),
                                       ("delta", delta, delta_count, base_number)):
            existing = session.execute(select(crl.PublishedCRL.id, crl.PublishedCRL.number).where(
                *crl._scope_key("sign", None, kind))).first()
            if existing is not None and existing.number >= number:
                continue
            values = {"number": number, "base_number": base, "this_update": now, "next_update": next_update,
                      "entries": count, "der": der}
            if existing is None:
                session.add(crl.PublishedCRL(authority="sign", partition=None, kind=kind, **values))
            else:
                session.execute(update(crl.PublishedCRL).where(crl.PublishedCRL.id == existing.id).values(**values))


step("store both CRLs (lock the issuer's row, read the old number, insert or update, commit)", store_both)


def raw_read():  # comparison only: the same rows through the DBAPI cursor, joined once
    connection = store.engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT crl_entry_der FROM certificates"
                       " WHERE authority = ? AND status IN ('held', 'revoked')", ("sign",))
        return b"".join(row[0] for row in cursor)
    finally:
        connection.close()


raw = step("comparison only: same SELECT via the DBAPI cursor, b''.join", raw_read)
assert len(raw) == len(full_der)


def old_row_only():  # comparison only: what _reserve_number needs of the last full CRL
    with store.sessions() as session:
        return session.execute(select(crl.PublishedCRL.next_update).where(
            *crl._scope_key("sign", None, "full"))).scalar_one()


step("comparison only: read only next_update of the last full CRL", old_row_only)
print(json.dumps({"steps": steps, "full_bytes": len(full), "delta_bytes": len(delta)}))
"""


# -- setup ---------------------------------------------------------------------------------------------
def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)  # minimal two's complement
    return b"\x02" + _der_length(len(body)) + body


class EntryEncoder:
    """Byte-for-byte the DER of ca_mock.crl.entries.encode_entry, without asn1crypto's ~140 us per entry.

    The reason extension is taken from encode_entry itself (one call per reason); every entry made here
    is compared with encode_entry on a random sample (``check``).
    """

    def __init__(self) -> None:
        from ca_mock.crl.entries import encode_entry

        self.encode_entry = encode_entry
        sample_time = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        time_tlv = b"\x17\x0d" + sample_time.strftime("%y%m%d%H%M%SZ").encode()
        self.extensions = {}
        for reason in (*REASONS, "certificateHold"):
            der = encode_entry(1, sample_time, reason)
            prefix = b"\x30" + _der_length(len(der) - 2) if len(der) - 2 < 0x80 else None
            assert prefix is not None and der.startswith(prefix + b"\x02\x01\x01" + time_tlv), der.hex()
            self.extensions[reason] = der[len(prefix) + 3 + len(time_tlv):]

    def __call__(self, serial: int, revoked_at: dt.datetime, reason: str) -> bytes:
        assert revoked_at.year < 2050
        body = (_der_integer(serial) + b"\x17\x0d" + revoked_at.strftime("%y%m%d%H%M%SZ").encode()
                + self.extensions[reason])
        return b"\x30" + _der_length(len(body)) + body

    def check(self, rows: list[dict], sample: int) -> int:
        for row in random.sample(rows, min(sample, len(rows))):
            expected = self.encode_entry(int(row["serial"], 16), row["revoked_at"], row["reason"])
            if row["crl_entry_der"] != expected:
                raise AssertionError(f"entry of {row['serial']} differs from encode_entry: "
                                     f"{row['crl_entry_der'].hex()} != {expected.hex()}")
        return min(sample, len(rows))


def populate(store, count: int, recent: int, held_fraction: float, index_path: Path, batch: int,
             check_sample: int, seed: int, der_bytes: int = 0) -> dict:
    """Insert ``count`` listed certificates of 'sign' and write openssl's index.txt for the same ones."""
    from sqlalchemy import insert

    from ca_mock.certificates.models import IssuedCertificate

    rng = random.Random(seed)
    encode = EntryEncoder()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before = now - dt.timedelta(days=400)
    not_after = now + dt.timedelta(days=4 * 365)
    table = IssuedCertificate.__table__
    seen: set[int] = set()
    der = b"\x30" * der_bytes  # stand-in for the certificate's DER (publish() never reads it)
    checked = held = 0
    with open(index_path, "w") as index, store.engine.begin() as connection:
        done = 0
        while done < count:
            rows = []
            for i in range(done, min(count, done + batch)):
                serial = rng.getrandbits(159) | (1 << 100)  # like x509.random_serial_number(): < 2**159
                while serial in seen:
                    serial = rng.getrandbits(159) | (1 << 100)
                seen.add(serial)
                is_recent = i >= count - recent  # the last ones changed a minute ago: the delta lists them
                changed = now - (dt.timedelta(seconds=rng.randint(30, 90)) if is_recent
                                 else dt.timedelta(days=2, seconds=rng.randint(0, 300 * 86400)))
                is_held = rng.random() < held_fraction
                held += is_held
                reason = "certificateHold" if is_held else REASONS[i % len(REASONS)]
                rows.append({
                    "serial": format(serial, "x"), "authority": "sign", "profile": "phone-signature",
                    "card_serial": None, "not_before": not_before, "not_after": not_after, "der": der,
                    "status": "held" if is_held else "revoked", "reason": reason, "revoked_at": changed,
                    "invalidity_date": None, "status_changed_at": changed,
                    "crl_entry_der": encode(serial, changed, reason),
                })
            checked += encode.check(rows, max(1, check_sample * len(rows) // count))
            connection.execute(insert(table), rows)
            index.writelines(common.index_line(r["serial"], not_after, f"/CN=bench {r['serial']}",
                                               r["revoked_at"], r["reason"]) for r in rows)
            done += len(rows)
    Path(f"{index_path}.attr").write_text("unique_subject = no\n")
    return {"held": held, "checked": checked, "serials": seen}


OPENSSL_CNF = """
[ ca ]
default_ca = bench

[ bench ]
dir              = {dir}
database         = $dir/index.txt
crlnumber        = $dir/crlnumber
certificate      = $dir/sign.pem
private_key      = $dir/sign.key
default_md       = sha256
default_crl_days = 1
unique_subject   = no
crl_extensions   = crl_ext

[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


# -- checking ----------------------------------------------------------------------------------------------
def check_crl(der_path: Path, ca_pem: Path, expected: int, serials: set[int] | None) -> str:
    from cryptography import x509

    done = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(der_path), "-noout",
                           "-CAfile", str(ca_pem)], capture_output=True, text=True)
    verdict = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or "verify OK" not in verdict:
        raise AssertionError(f"openssl crl refused {der_path.name}: {verdict}")
    crl = x509.load_der_x509_crl(der_path.read_bytes())
    if len(crl) != expected:
        raise AssertionError(f"{der_path.name}: {len(crl)} entries, expected {expected}")
    if serials is not None:
        listed = {entry.serial_number for entry in crl}
        if listed != serials:
            raise AssertionError(f"{der_path.name}: lists {len(listed - serials)} unknown serials and misses "
                                 f"{len(serials - listed)}")
    return f"openssl crl: {verdict}; cryptography: {len(crl)} entries" + (", same serials" if serials else "")


# -- one size ----------------------------------------------------------------------------------------------
def run_size(args, res: common.Resources, size: int) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from sqlalchemy import select

    from ca_mock.crl.models import PublishedCRL

    work = res.tempdir(f"crl-{size}")
    data = work / "ca"
    print(f"\n== {size:,} listed certificates", flush=True)
    t0 = time.perf_counter()
    store, _settings = common.make_ca(data, "http://127.0.0.1:8100")
    common.export_authority(store, "sign", work)
    info = populate(store, size, min(args.delta_entries, size), args.held, work / "index.txt", args.batch,
                    args.check_sample, args.seed, args.cert_der_bytes)
    store.dispose()
    (work / "crlnumber").write_text("01\n")
    (work / "openssl.cnf").write_text(OPENSSL_CNF.format(dir=work))
    print(f"setup (not the figure): {size:,} rows ({info['held']:,} held, "
          f"{min(args.delta_entries, size):,} changed a minute ago) inserted in"
          f" {time.perf_counter() - t0:.1f} s;"
          f" {info['checked']:,} sampled entries identical to encode_entry()", flush=True)

    # Ours.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JPKI_CA_")}
    wall, peak, code, out, cpu = common.run_measured([common.PYTHON, "-c", CHILD, str(data)], res, env=env)
    if code != 0:
        raise RuntimeError(f"publish() child failed ({code}): {out[-3000:]}")
    ours = json.loads(out.strip().splitlines()[-1])
    ours.update(wall_s=wall, peak_mib=peak, child_cpu_s=cpu)
    from jpki_common.store import Store

    store = Store(f"sqlite:///{data / 'ca.sqlite3'}")
    with store.sessions() as session:
        full, delta = (session.scalars(select(PublishedCRL).where(
            PublishedCRL.authority == "sign", PublishedCRL.partition.is_(None), PublishedCRL.kind == kind)).one()
            for kind in ("full", "delta"))
        (work / "ours.der").write_bytes(full.der)
        (work / "ours-delta.der").write_bytes(delta.der)
        ours.update(full_mib=len(full.der) / 2**20, delta_bytes=len(delta.der))
    store.dispose()

    # Ours again: a re-publish that replaces the CRL just made (what the server's publisher does
    # after every change), in another fresh child.
    wall, peak, code, out, cpu = common.run_measured([common.PYTHON, "-c", CHILD, str(data)], res, env=env)
    if code != 0:
        raise RuntimeError(f"second publish() child failed ({code}): {out[-3000:]}")
    again = json.loads(out.strip().splitlines()[-1])
    again.update(wall_s=wall, peak_mib=peak, child_cpu_s=cpu, full_mib=ours["full_mib"])
    ours["again"] = again

    # openssl.
    wall_o, peak_o, code, out, cpu_o = common.run_measured(
        ["openssl", "ca", "-gencrl", "-config", str(work / "openssl.cnf"), "-out", str(work / "openssl.pem")],
        res)
    if code != 0:
        raise RuntimeError(f"openssl ca -gencrl failed ({code}): {out[-3000:]}")
    peer_crl = x509.load_pem_x509_crl((work / "openssl.pem").read_bytes())
    (work / "openssl.der").write_bytes(peer_crl.public_bytes(serialization.Encoding.DER))
    peer = {"wall_s": wall_o, "cpu_s": cpu_o, "peak_mib": peak_o,
            "full_mib": (work / "openssl.der").stat().st_size / 2**20}
    del peer_crl

    print(f"  ours     publish(): {ours['publish_s']:7.2f} s, CPU {ours['publish_cpu_s']:.2f} s "
          f"(whole child {ours['wall_s']:6.2f} s, of which {ours['startup_s']:.2f} s interpreter + imports)"
          f"  peak RSS {ours['peak_mib']:7.1f} MiB ({ours['rss_before_mib']:.0f} MiB before the call)"
          f"  full CRL {ours['full_mib']:6.2f} MiB, {ours['full_entries']:,} entries; delta CRL "
          f"{ours['delta_bytes']:,} bytes, {ours['delta_entries']:,} entries", flush=True)
    print(f"  ours     publish() again, replacing that CRL: {again['publish_s']:7.2f} s, CPU "
          f"{again['publish_cpu_s']:.2f} s (whole child {again['wall_s']:6.2f} s)  peak RSS "
          f"{again['peak_mib']:7.1f} MiB ({again['rss_before_mib']:.0f} MiB before the call)", flush=True)
    print(f"  openssl  ca -gencrl: {peer['wall_s']:6.2f} s, CPU {peer['cpu_s']:.2f} s (whole process)"
          f"  peak RSS {peer['peak_mib']:7.1f} MiB  full CRL {peer['full_mib']:6.2f} MiB"
          f" (written as PEM; DER size shown)", flush=True)

    serials = info["serials"] if args.compare_serials else None
    print("  check ours:    " + check_crl(work / "ours.der", work / "sign.pem", size, serials), flush=True)
    print("  check delta:   " + check_crl(work / "ours-delta.der", work / "sign.pem", ours["delta_entries"],
                                          None), flush=True)
    print("  check openssl: " + check_crl(work / "openssl.der", work / "sign.pem", size, serials), flush=True)

    steps = None
    if args.steps:
        _, _, code, out, _ = common.run_measured([common.PYTHON, "-c", CHILD_STEPS, str(data)], res, env=env)
        if code == 0:
            steps = json.loads(out.strip().splitlines()[-1])["steps"]
            print("  publish() step by step (a second child, not the figure):")
            for name, value in steps.items():
                if "RSS" not in name:
                    rss = steps[name + " (peak RSS MiB so far)"]
                    print(f"    {value:7.2f} s  {name}   (peak RSS so far {rss:.0f} MiB)")
        else:
            print(f"  (step child failed: {out[-500:]})")
    if not args.keep:
        for path in work.glob("*.der"):
            path.unlink()
    return {"size": size, "ours": ours, "openssl": peer, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000",
                        help="comma-separated entry counts (default 100000,1000000)")
    parser.add_argument("--delta-entries", type=int, default=1000,
                        help="entries that changed a minute ago, so the delta CRL lists them (default 1000)")
    parser.add_argument("--held", type=float, default=0.02,
                        help="fraction held rather than revoked (default 0.02)")
    parser.add_argument("--cert-der-bytes", type=int, default=0,
                        help="bytes stored in each row's `der` column (default 0: publish() does not read"
                             " it; ~1200 makes rows as large as real ones)")
    parser.add_argument("--batch", type=int, default=20000, help="rows per INSERT batch (default 20000)")
    parser.add_argument("--check-sample", type=int, default=2000,
                        help="entries compared with encode_entry() per size (default 2000)")
    parser.add_argument("--no-compare-serials", dest="compare_serials", action="store_false",
                        help="skip checking that both CRLs list exactly the inserted serials")
    parser.add_argument("--no-steps", dest="steps", action="store_false",
                        help="skip the step-by-step timing of publish()")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (stores, CRLs)")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    print(f"machine: {common.machine_line()}")
    results = []
    with common.Resources(keep=args.keep) as res:
        for size in sizes:
            results.append(run_size(args, res, size))

    print(f"\nsummary ({common.load_line()}):")
    print(f"  {'entries':>10} {'who':8} {'seconds':>8} {'CPU s':>7} {'peak MiB':>9} {'CRL MiB':>8}"
          f" {'peak/CRL':>9}")
    for r in results:
        o, p = r["ours"], r["openssl"]
        a = o["again"]
        rows = (("ours", o["publish_s"], o["publish_cpu_s"], o["peak_mib"], o["full_mib"],
                 f"whole child {o['wall_s']:.2f} s; full + delta CRL"),
                ("ours (2)", a["publish_s"], a["publish_cpu_s"], a["peak_mib"], o["full_mib"],
                 f"whole child {a['wall_s']:.2f} s; re-publish over an existing CRL"),
                ("openssl", p["wall_s"], p["cpu_s"], p["peak_mib"], p["full_mib"], "full CRL only"))
        for who, seconds, cpu, peak, crl, note in rows:
            print(f"  {r['size']:>10,} {who:8} {seconds:8.2f} {cpu:7.2f} {peak:9.1f} {crl:8.2f}"
                  f" {peak / crl:8.1f}x   ({note})")
        # The verdict compares like with like: our whole child process (interpreter start, imports,
        # publish(), exit) with openssl's whole process. The publish() call alone is printed beside it,
        # labelled, but openssl has no "call alone" to set against it, so the goal is not judged on it.
        whole = [p["wall_s"] / o["wall_s"], p["wall_s"] / a["wall_s"],
                 p["cpu_s"] / o["child_cpu_s"], p["cpu_s"] / a["child_cpu_s"]]
        call_only = [p["wall_s"] / o["publish_s"], p["wall_s"] / a["publish_s"],
                     p["cpu_s"] / o["publish_cpu_s"], p["cpu_s"] / a["publish_cpu_s"]]
        met = sum(x >= 3 for x in whole)
        verdict = "met" if met == 4 else "NOT met" if met == 0 else f"met by {met} of these 4 ratios only"
        print(f"  {'':>10} speed ours vs openssl (openssl's time / ours), whole process against whole"
              f" process (like for like; ours also makes the delta CRL): {whole[0]:.2f}x (first publish),"
              f" {whole[1]:.2f}x (re-publish); in CPU time {whole[2]:.2f}x and {whole[3]:.2f}x;"
              f" goal >= 3x: {verdict}")
        print(f"  {'':>10} (the publish() call alone against openssl's whole process, NOT like for like and"
              f" not the verdict's basis: {call_only[0]:.2f}x, {call_only[1]:.2f}x; in CPU time"
              f" {call_only[2]:.2f}x and {call_only[3]:.2f}x)")
        extra = max(o["peak_mib"] - o["rss_before_mib"], a["peak_mib"] - a["rss_before_mib"])
        peak = max(o["peak_mib"], a["peak_mib"])
        print(f"  {'':>10} memory: peak {peak / o['full_mib']:.1f}x the CRL's size"
              f" ({extra / o['full_mib']:.1f}x"
              f" counting only what publish() added to the interpreter);"
              f" openssl {p['peak_mib'] / p['full_mib']:.1f}x")
    return 0


if __name__ == "__main__":
    common.run(main)
