"""The service's key files: made once, whole, by whichever process starts first on a new data folder.

``jpki-service serve --workers 2`` starts two processes that each load the keys: the one that lost the
race to make a key file once read it before the other had written it, and indexed persons under an empty
key, so a registration made through one worker was not found through the other."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from jpki_service.adapters.service_keys import MissingKey, load_service_keys
from jpki_service.common.settings import ServiceSettings

RACERS = 8


def _keys_of(data_dir: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    start.wait()
    keys = load_service_keys(ServiceSettings(data_dir=Path(data_dir), person_key=None, data_key=None))
    out.put((keys.person_index, keys.holder_index, keys.holder_seal))


def test_processes_starting_together_on_a_new_folder_share_one_whole_key(tmp_path):
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(RACERS), context.Queue()
    racers = [context.Process(target=_keys_of, args=(str(tmp_path / "data"), start, out)) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    seen = [out.get(timeout=60) for _ in racers]
    for racer in racers:
        racer.join(timeout=60)
    assert all(racer.exitcode == 0 for racer in racers)
    assert len(set(seen)) == 1, "the processes read different keys"
    assert len((tmp_path / "data" / "person-key").read_text().strip()) == 64
    assert len((tmp_path / "data" / "data-key").read_text().strip()) == 64
    assert not [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".")], "a draft was left behind"


def test_an_empty_key_file_is_refused_not_used(tmp_path):
    data = tmp_path / "data"
    load_service_keys(ServiceSettings(data_dir=data, person_key=None, data_key=None))
    (data / "person-key").write_text("")
    with pytest.raises(MissingKey, match="person-key is empty"):
        load_service_keys(ServiceSettings(data_dir=data, person_key=None, data_key=None))
