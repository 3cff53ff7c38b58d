"""The message catalogues of the three programs, kept up to date with Babel (docs/development.md).

    python -m jpki_common.catalogues update [DOMAIN...]  # add new strings to the .po (empty msgstr), drop gone ones
    python -m jpki_common.catalogues check               # list strings without a Japanese translation; exit 1 if any

Run from a checkout (the paths below are relative to its root). ``tests/test_translations.py`` runs
the check, so a user-visible string marked for translation cannot ship without its Japanese.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "N_": None, "Sentence": None, "gettext": None, "ngettext": (1, 2), "plural": (1, 2)}


@dataclass(frozen=True)
class Domain:
    """One program's catalogue: where its strings are marked (globs from the checkout's root) and its .po."""

    name: str
    patterns: tuple[tuple[str, str], ...]
    locale_dir: str

    def po(self, language: str = "ja") -> Path:
        return ROOT / self.locale_dir / language / "LC_MESSAGES" / f"{self.name}.po"


# The service's catalogue holds what its pages and notices say, and the refusals its use cases
# raise that a page shows (``Sentence``s and problem titles), wherever they are written.
_SERVICE_SOURCES = ("console/**", "notifications/**", "callcentre/**", "registrations/**", "approvals/**",
                    "operators/roles.py", "operators/service.py", "common/problems.py", "holder_data.py",
                    "japanese_items.py", "lifecycle.py")
DOMAINS = (
    Domain("service",
           (("jpki_service/console/templates/**.html", "jinja2"),
            *((f"jpki_service/{source}{'.py' if source.endswith('**') else ''}", "python")
              for source in _SERVICE_SOURCES),
            ("jpki_common/problems.py", "python")), "jpki_service/locale"),
    Domain("operator_cli", (("jpki_service/operators/client_cli.py", "python"),
                            ("jpki_service/lifecycle.py", "python")),  # the state words it shares with the console
           "jpki_service/locale"),
    Domain("app_client", (("app_client/**.py", "python"),), "app_client/locale"),
)


def extract(domain: Domain) -> Catalog:
    """Every string marked in the domain's sources, as a template catalogue."""
    template = Catalog(domain=domain.name)
    method_map = list(domain.patterns)
    options = {"**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    for filename, line, message, comments, context in extract_from_dir(
            ROOT, method_map, options_map=options, keywords=KEYWORDS, directory_filter=_only_sources):
        template.add(message, None, [(filename, line)], auto_comments=comments, context=context)
    return template


def _only_sources(dirpath: str) -> bool:
    """Walk the three programs and the shared package only (not .venv, var/, tests/...)."""
    relative = Path(dirpath).resolve().relative_to(ROOT).parts
    return not relative or relative[0] in ("jpki_common", "jpki_service", "app_client") and not any(
        part.startswith((".", "_")) for part in relative)


def _read(path: Path, domain: Domain) -> Catalog:
    if not path.is_file():
        return Catalog(locale="ja", domain=domain.name, project="jpki-phone-lifecycle",
                       msgid_bugs_address="", copyright_holder="", fuzzy=False)
    with path.open("rb") as source:
        return read_po(source, locale="ja", domain=domain.name)


def update(domain: Domain) -> Path:
    """Merge the sources' strings into the domain's Japanese .po (new ones with an empty msgstr)."""
    path = domain.po()
    catalog = _read(path, domain)
    catalog.update(extract(domain), no_fuzzy_matching=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog, width=120, omit_header=False, ignore_obsolete=True, sort_output=False)
    return path


def untranslated(domain: Domain) -> list[str]:
    """The source strings (msgids) that the Japanese catalogue lacks or leaves empty or fuzzy."""
    catalog = _read(domain.po(), domain)
    missing = []
    for message in extract(domain):
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        strings = found.string if found is not None else None
        complete = all(strings) if isinstance(strings, (list, tuple)) else bool(strings)
        if found is None or found.fuzzy or not complete:
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


def main(argv: list[str]) -> int:
    if argv[1:2] == ["update"]:
        wanted = set(argv[2:])
        unknown = wanted - {d.name for d in DOMAINS}
        if unknown:
            print(f"no such catalogue: {', '.join(sorted(unknown))} (there are {', '.join(d.name for d in DOMAINS)})")
            return 2
        for domain in (d for d in DOMAINS if not wanted or d.name in wanted):
            print(update(domain).relative_to(ROOT))
        return 0
    if argv[1:] == ["check"]:
        status = 0
        for domain in DOMAINS:
            for message in untranslated(domain):
                print(f"{domain.name}: no Japanese for {message!r}")
                status = 1
        return status
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
