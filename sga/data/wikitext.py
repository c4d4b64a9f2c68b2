"""WikiText-2, from the hub or a local copy, and an offline stand-in in the same layout.

:func:`load_wikitext` reads one split of ``Salesforce/wikitext`` (config ``wikitext-2-raw-v1``) or a local
folder in its layout back as whole articles (:func:`wikitext_documents`, as lm-eval's ``wikitext`` task
scores them). :func:`generate_wikitext` writes a non-saga encyclopedic corpus (fictional towns, rivers,
species, ships and people) in that layout: the stand-in for WikiText-2 used for perplexity and as a pool
of general text (SGA's normal samples, the retain data of the baselines). Harry Potter and MUSE reuse it.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Iterable

from sga.data.harry_potter import _FIRST, _PRONOUNS, _pool  # the saga's name pools: people's first names, pronouns
from sga.data.hub import load_hub_dataset, write_parquet_repo

WIKITEXT_ID = "Salesforce/wikitext"
WIKITEXT_CONFIG = "wikitext-2-raw-v1"
WIKITEXT_SPLITS: tuple[str, ...] = ("train", "validation", "test")


def load_wikitext(
    source: str | os.PathLike = WIKITEXT_ID,
    split: str = "test",
    config: str = WIKITEXT_CONFIG,
    cache_dir: str | os.PathLike | None = None,
) -> list[str]:
    """Whole articles of one WikiText split (see :func:`wikitext_documents`), from the hub id or a local copy."""
    if split not in WIKITEXT_SPLITS:
        raise ValueError(f"Unknown WikiText split {split!r}; choose one of {list(WIKITEXT_SPLITS)}.")
    documents = wikitext_documents(load_hub_dataset(str(source), config, split=split, cache_dir=cache_dir)["text"])
    if not documents:
        raise ValueError(f"{source} {config}/{split} holds no text.")
    return documents


def wikitext_documents(rows: Iterable[str]) -> list[str]:
    """Join WikiText rows (one line each) into articles, as lm-eval's wikitext task scores them.

    A row ``" = Title = "`` (a top-level heading) starts a new article; section headings
    ``" = = Section = = "`` stay inside it. Each non-empty row is one line (a newline is added where it
    lacks one); empty rows are the blank lines between paragraphs and are left out. Whitespace-only
    articles (e.g. before the first heading) are dropped.
    """
    documents: list[list[str]] = [[]]
    for row in rows:
        if not row:
            continue
        if _is_title(row):
            documents.append([])
        documents[-1].append(row if row.endswith("\n") else row + "\n")
    return [text for text in ("".join(lines) for lines in documents) if text.strip()]


def _is_title(row: str) -> bool:
    return re.fullmatch(r" = [^=](.*[^=])? = ", row.rstrip("\n")) is not None


_SYLLABLES = (
    _pool("Bal|Cor|Dun|El|Fen|Gal|Har|Ist|Kel|Lor|Mar|Nor|Ost|Pel|Quen|Ros|Sal|Tor|Ul|Ver|Wen|Yar|Zan|Bry|Cal"),
    _pool("ford|holt|mere|ton|wick|by|stad|dal|burg|more|ley|ham|ness|vik|rode|combe|field|thorpe"),
)
_COUNTRIES = _pool("Norway|Portugal|Chile|Scotland|Poland|Canada|Estonia|Ireland|Austria|New Zealand|Slovenia|Wales")
_DIRECTIONS = _pool("north|south|east|west|north-east|south-west")
# Per article kind: intro sentences, then sections (heading, sentences); slots are drawn per article.
_ARTICLES = {
    "town": (
        ("{name} is a {size} in the {region} of {country}, on the {river}, {km} kilometres {direction} of {city}.",
         "{name} is a {size} in {country}, on the {river}. At the {year} census it had a population of {pop}."),
        (("History", ("The area was first settled in the {century} century, when farmers cleared the valley floor.",
                      "{name} received a market charter in {year}, and a stone bridge over the {river} followed.",
                      "A fire in {year2} destroyed most of the old centre, which was rebuilt in brick.",
                      "During the {century2} century the town grew around its {industry} industry.")),
         ("Geography", ("The town stands at an elevation of {elev} metres, where the {river} leaves a narrow gorge.",
                        "Its climate is temperate, with cool summers and frequent autumn storms.",
                        "To the {direction} lie the {hills}, which rise to {elev2} metres.")),
         ("Economy", ("The economy was long based on {industry}, which employed a third of the population in {year2}.",
                      "Tourism has grown since the opening of the {city} railway in {year}.",
                      "A weekly market is still held on the square every {weekday}.")),
         ("Culture", ("The town museum, opened in {year2}, holds a collection of {collection}.",
                      "An annual festival of {festival} takes place each {season}.",
                      "The parish church of Saint {saint} dates from the {century} century."))),
    ),
    "river": (
        ("The {name} is a river in {country}. It is {km2} kilometres long and drains {area} square kilometres.",
         "The {name} is a {km2}-kilometre river in the {region} of {country}, a tributary of the {river}."),
        (("Course", ("The river rises in the {hills} at an elevation of {elev} metres and flows {direction}.",
                     "It passes the town of {city} before joining the {river} near {city2}.",
                     "Its main tributaries are the {trib} and the {trib2}.")),
         ("Hydrology", ("The mean discharge at its mouth is {flow} cubic metres per second.",
                        "Floods are most common in {season}, when snow melts in the uplands.",
                        "A dam built in {year} near {city} regulates the lower course.")),
         ("Ecology", ("The river supports populations of trout, grayling and freshwater pearl mussels.",
                      "Otters returned to the upper reaches in the {year2}s after a long absence.",
                      "Parts of the valley have been protected as a nature reserve since {year2}."))),
    ),
    "species": (
        ("The {adj} {animal} ({genus} {epithet}) is a {animal} of the family {family}, found in {habitat}.",
         "The {adj} {animal} ({genus} {epithet}) is a small {animal} native to {country}, first described in {year}."),
        (("Description", ("Adults measure {cm} centimetres in length and weigh about {grams} grams.",
                          "The upper parts are {colour} and the underside is pale, with a dark stripe through the eye.",
                          "Males and females look alike, although females are slightly larger.")),
         ("Distribution and habitat", ("It lives in {habitat}, mostly below {elev} metres.",
                                       "The species is common in the {region} but rare near {city}.",
                                       "Small populations were recorded on offshore islands in {year2}.")),
         ("Behaviour", ("It feeds mainly on insects and seeds, foraging alone or in pairs.",
                        "Breeding takes place in {season}, and a clutch of {clutch} eggs is usual.",
                        "Its call is a short, rising whistle repeated every few seconds.")),
         ("Conservation", ("The species is listed as being of least concern.",
                           "Habitat loss around {city} has reduced its numbers since {year2}."))),
    ),
    "ship": (
        ("SS {name} was a {vessel} built in {year} by the {city} shipyard for a {nationality} shipping line.",
         "SS {name} was a {nationality} {vessel} launched at {city} in {year}."),
        (("Construction", ("She was {length} metres long, with a beam of {beam} metres and a single funnel.",
                           "Her steam engine gave a top speed of {knots} knots.",
                           "She was launched on {day} {month} {year} and completed three months later.")),
         ("Service history", ("For most of her career she carried {cargo} between {city} and {city2}.",
                              "In {year2} she ran aground off {city2} but was refloated within a week.",
                              "She was sold in {year2} and renamed {name2}.")),
         ("Fate", ("She was laid up at {city2} in {year3} and broken up the following year.",
                   "Her bell is kept in the maritime museum at {city}."))),
    ),
    "person": (
        ("{first} {name} ({year} – {year3}) was a {nationality} {profession} known for work on {field}.",
         "{first} {name} was a {nationality} {profession}, born in {city} in {year}."),
        (("Early life", ("{first} {name} was born in {city}, the {ordinal} child of a {parent_job}.",
                         "{pronoun} studied at the university of {city2}, graduating in {year2}.",
                         "As a student {pronoun_lower} became interested in {field}.")),
         ("Career", ("{pronoun} taught at {city2} for twenty years and wrote {books} books.",
                     "{possessive} best known paper, on {field}, appeared in {year2}.",
                     "In later life {pronoun_lower} served as director of the {city} institute.")),
         ("Legacy", ("A street in {city} was named after {object} in {year3}.",
                     "{possessive} papers are kept in the national archive."))),
    ),
}  # fmt: skip
_SLOT_POOLS = {
    "size": _pool("market town|village|small town|port town|cathedral city"),
    "region": _pool("north|south|east|west|central uplands|coastal lowlands"),
    "industry": _pool("wool|timber|fishing|paper|salt|glass|brewing"),
    "collection": _pool("local pottery|old farm tools|maps of the region|coins and seals|paintings by local artists"),
    "festival": _pool("folk music|boats|bread|lanterns|poetry"),
    "season": _pool("spring|summer|autumn|winter"),
    "saint": _pool("Brigid|Olaf|Anne|Martin|Columba|Agnes"),
    "weekday": _pool("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday"),
    "century": _pool("12th|13th|14th|15th|16th"), "century2": _pool("18th|19th"),
    "adj": _pool("Spotted|Lesser|Crested|Pale|Mountain|Northern|Banded"),
    "animal": _pool("finch|warbler|shrew|vole|lizard|frog|plover"),
    "habitat": _pool("wet meadows|pine forests|rocky coasts|river valleys|high moorland"),
    "colour": _pool("olive brown|grey|sandy|dark green|chestnut"),
    "vessel": _pool("cargo steamer|passenger ferry|coastal tanker|fishing trawler"),
    "cargo": _pool("coal|timber|grain|passengers and mail|salted fish"),
    "month": _pool("March|April|May|June|September|October"),
    "nationality": _pool("Norwegian|Portuguese|Chilean|Scottish|Polish|Canadian|Estonian"),
    "profession": _pool("botanist|engineer|geologist|historian|mathematician|architect|astronomer"),
    "field": _pool("river erosion|the flora of the uplands|bridge design|medieval trade|prime numbers|variable stars"),
    "parent_job": _pool("schoolteacher|ferryman|printer|doctor|farmer|clockmaker"),
    "ordinal": _pool("second|third|eldest|youngest"),
}  # fmt: skip


_FAMILIES = {
    "finch": "Fringillidae", "warbler": "Sylviidae", "shrew": "Soricidae", "vole": "Cricetidae",
    "lizard": "Lacertidae", "frog": "Ranidae", "plover": "Charadriidae",
}  # fmt: skip


def _coin(rng: random.Random) -> str:
    return rng.choice(_SYLLABLES[0]) + rng.choice(_SYLLABLES[1])


def _article(rng: random.Random) -> tuple[str, list[tuple[str, list[str]]]]:
    """(title, [(section heading or "" for the lead, paragraphs)]) of one encyclopedic article."""
    kind = rng.choice(list(_ARTICLES))
    intros, sections = _ARTICLES[kind]
    year = rng.randint(1780, 1950)
    gender = rng.choice(("female", "male"))
    pronoun, obj, possessive = _PRONOUNS[gender]
    slots = {
        **{key: rng.choice(pool) for key, pool in _SLOT_POOLS.items()},
        "name": _coin(rng), "name2": _coin(rng), "city": _coin(rng), "city2": _coin(rng),
        "river": f"{_coin(rng)} River", "trib": _coin(rng), "trib2": _coin(rng), "hills": f"{_coin(rng)} Hills",
        "country": rng.choice(_COUNTRIES), "direction": rng.choice(_DIRECTIONS), "genus": _coin(rng),
        "epithet": _coin(rng).lower() + "ensis", "first": rng.choice(_FIRST[gender]),
        "pronoun": pronoun.capitalize(), "pronoun_lower": pronoun, "object": obj, "possessive": possessive.capitalize(),
        "year": year, "year2": year + rng.randint(5, 40), "year3": year + rng.randint(45, 80),
        "day": rng.randint(1, 28), "km": rng.randint(4, 90), "km2": rng.randint(20, 400),
        "area": rng.randint(100, 9000), "pop": f"{rng.randint(800, 40000):,}", "elev": rng.randint(20, 900),
        "elev2": rng.randint(900, 2100), "flow": rng.randint(5, 400), "cm": rng.randint(8, 30),
        "grams": rng.randint(9, 400), "clutch": rng.randint(2, 6), "length": rng.randint(40, 120),
        "beam": rng.randint(7, 18), "knots": rng.randint(9, 16), "books": rng.choice(("two", "three", "four", "five")),
    }  # fmt: skip
    slots["family"] = _FAMILIES[slots["animal"]]
    titles = {
        "ship": f"SS {slots['name']}", "person": f"{slots['first']} {slots['name']}",
        "species": f"{slots['adj']} {slots['animal']}", "river": f"{slots['name']} River",
    }  # fmt: skip
    title = titles.get(kind, slots["name"])
    if kind == "river":
        slots["name"] = title
    parts = [("", [rng.choice(intros).format(**slots)])]
    for heading, sentences in rng.sample(sections, rng.randint(2, len(sections))):
        chosen = rng.sample(sentences, rng.randint(2, len(sentences)))
        paragraphs = [" ".join(chosen[:2])] + ([" ".join(chosen[2:])] if len(chosen) > 2 else [])
        parts.append((heading, [paragraph.format(**slots) for paragraph in paragraphs]))
    return title, parts


def _wikitext_rows(title: str, parts: list[tuple[str, list[str]]]) -> list[str]:
    """An article as WikiText rows: ``" = Title = \\n"``, paragraphs ``" text \\n"``, empty rows around headings."""
    rows = ["", f" = {title} = \n", ""]
    for heading, paragraphs in parts:
        if heading:
            rows += ["", f" = = {heading} = = \n", ""]
        rows += [f" {paragraph} \n" for paragraph in paragraphs]
    return rows


def generate_wikitext(
    out_dir: str | os.PathLike, n_train: int = 60, n_validation: int = 10, n_test: int = 10, seed: int = 0
) -> Path:
    """Write an encyclopedic corpus of fictional towns, rivers, species, ships and people (no saga text)
    in the ``Salesforce/wikitext`` layout (config ``wikitext-2-raw-v1``, splits train/validation/test,
    field ``text``, one row per line with the real one's empty rows); return ``out_dir``.

    The same arguments give byte-identical files.
    """
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    if min(sizes.values()) < 1:
        raise ValueError(f"Every WikiText split needs at least one article; got {sizes}.")
    rng = random.Random(seed)
    tables = {
        split: [{"text": row} for _ in range(n) for row in _wikitext_rows(*_article(rng))] for split, n in sizes.items()
    }
    description = "WikiText-2 stand-in written by `sga.data.wikitext.generate_wikitext`."
    return write_parquet_repo(out_dir, {WIKITEXT_CONFIG: tables}, description=description)
