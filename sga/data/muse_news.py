"""MUSE-News: the hub loader and an offline generator of a mini news corpus in the exact hub layout.

The generator writes FICTITIOUS news (nothing of the BBC text of ``muse-bench/MUSE-News``): every article
reports one event (an organisation's plans for a project in a town) through a set of facts (people,
places, dates, sums, counts, votes ...), each stated by one of several sentence templates. Every person
and organisation belongs to one article only. Articles are drawn one after another from the same process
and dealt out in order: the first ``articles_per_split`` are ``forget``, then ``retain1``, ``retain2`` and
``holdout``. Configs and splits follow the hub repository:

- ``raw``: the articles (``text``). ``train``: the forget, retain1 and retain2 articles again (on the hub
  ``train/forget`` is the larger union of the ``scal`` folds; the mini corpus has no ``scal``/``sust``).
- ``verbmem/forget``: per forget article, ``prompt`` = its first half of sentences, ``gt`` = the rest
  (``prompt + " " + gt`` is the article).
- ``knowmem``: ``forget_qa`` asks ``qa_per_article`` questions about each forget article except the last
  ``n_icl``, which give one ``forget_qa_icl`` example each; ``retain_qa`` / ``retain_qa_icl`` likewise from
  the ``EVAL_RETAIN_SPLIT`` articles. Every answer is a short span copied verbatim from its article.
- ``privleak``: ``forget``, ``retain`` (the ``EVAL_RETAIN_SPLIT`` articles) and ``holdout`` texts.

The holdout articles share the style but none of the people or organisations of the others: training
code must never read them. Which article each row comes from: :func:`muse_news_sources`.
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Sequence

import datasets

from sga.data.hub import load_hub_dataset, write_parquet_repo

HUB_ID = "muse-bench/MUSE-News"
# config -> splits of the hub repository (its scal and sust configs are not covered here)
MUSE_NEWS_SPLITS: dict[str, tuple[str, ...]] = {
    "knowmem": ("retain_qa_icl", "retain_qa", "forget_qa", "forget_qa_icl"),
    "privleak": ("retain", "forget", "holdout"),
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "train": ("forget", "retain1", "retain2"),
    "verbmem": ("forget",),
}
MUSE_NEWS_FIELDS: dict[str, tuple[str, ...]] = {
    "knowmem": ("question", "answer"),
    "privleak": ("text",),
    "raw": ("text",),
    "train": ("text",),
    "verbmem": ("prompt", "gt"),
}
# The retain articles that knowmem/retain_qa and privleak/retain are drawn from. The hub's history points to
# retain2 (its knowmem split was first named retain2_qa, and muse_bench's AUC table keys its retain split
# "retain2"); retain1 is the retain set that unlearning methods regularise on (muse_bench's scripts).
EVAL_RETAIN_SPLIT = "retain2"
# what the metrics read: name -> (config, split)
EVAL_SPLITS: dict[str, tuple[str, str]] = {
    "verbmem_forget": ("verbmem", "forget"),
    "knowmem_forget_qa": ("knowmem", "forget_qa"),
    "knowmem_forget_qa_icl": ("knowmem", "forget_qa_icl"),
    "knowmem_retain_qa": ("knowmem", "retain_qa"),
    "knowmem_retain_qa_icl": ("knowmem", "retain_qa_icl"),
    "privleak_forget": ("privleak", "forget"),
    "privleak_holdout": ("privleak", "holdout"),
}
_RAW_SPLITS = MUSE_NEWS_SPLITS["raw"]

Source = tuple[str, int]  # (raw split, article index in it)


def load_muse_news(
    source: str, config: str, split: str, cache_dir: str | os.PathLike | None = None
) -> datasets.Dataset:
    """Load one MUSE-News ``config``/``split`` from ``HUB_ID`` or a local hub-layout directory.

    Raises ``ValueError`` for a config or split MUSE-News does not have (naming the valid ones) and for a
    row with an empty or missing field (an empty article, a QA row without answer, a verbmem row without gt).
    """
    if config not in MUSE_NEWS_SPLITS:
        raise ValueError(f"Unknown MUSE-News config {config!r}; valid configs: {list(MUSE_NEWS_SPLITS)}.")
    if split not in MUSE_NEWS_SPLITS[config]:
        raise ValueError(
            f"Unknown split {split!r} of MUSE-News config {config!r}; valid splits: {list(MUSE_NEWS_SPLITS[config])}."
        )
    data = load_hub_dataset(source, config, split=split, cache_dir=cache_dir)
    fields = MUSE_NEWS_FIELDS[config]
    missing = [field for field in fields if field not in data.column_names]
    if missing:
        raise ValueError(
            f"MUSE-News {config}/{split} in {source} lacks the column(s) {missing}; its rows need {list(fields)}, "
            f"got {data.column_names}."
        )
    for field in fields:
        for row, value in enumerate(data[field]):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"Row {row} of MUSE-News {config}/{split} in {source} has an empty {field!r}; every row needs a "
                    f"non-empty {' and '.join(map(repr, fields))}. Fix or drop that row in the local copy."
                )
    return data


def load_eval_splits(source: str, cache_dir: str | os.PathLike | None = None) -> dict[str, datasets.Dataset]:
    """Every split the MUSE metrics read, keyed as ``EVAL_SPLITS``."""
    return {name: load_muse_news(source, config, split, cache_dir) for name, (config, split) in EVAL_SPLITS.items()}


# ---------------------------------------------------------------- pools for the fictitious news


def _pool(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split("|"))


_FIRST = _pool(
    "Amara|Bram|Celia|Dorian|Edda|Fenwick|Greer|Hollis|Ines|Jasper|Kerensa|Lorcan|Maren|Niall|Odette|"
    "Piers|Quilla|Rowan|Saoirse|Tamsin|Ulric|Verity|Wystan|Xanthe|Yannick|Zelda|Alaric|Brisa|Cosmo|Delphine|"
    "Emrys|Fenella|Gideon|Hester|Ivo|Juno|Kit|Linnea|Magnus|Nerys"
)
_LAST = _pool(
    "Ashdown|Blackwood|Carraway|Dunleavy|Ellery|Fairbairn|Gosling|Hathersage|Ingleby|Jessop|Kettering|"
    "Lockridge|Marchbank|Netherby|Oakshott|Pembury|Quarrie|Rushworth|Selwood|Thackeray|Underwood|Vantreight|"
    "Wetherall|Yelland|Abernethy|Brackley|Coverdale|Drummond|Eastwood|Fotheringay|Gillard|Holloway|Inchbald|"
    "Jolliffe|Kinsella|Lisle|Mottram|Nettleship|Ormerod|Penhaligon"
)
_ORG_STEMS = _pool(
    "Harrowgate|Ellesmere|Corvin|Marlow Vale|Brightwater|Kestrel|Saltmarsh|Amberley|Northgate|Greywell|"
    "Oakhaven|Redfern|Silverdale|Thornbury|Westmoor|Ravensmere|Copperfield|Highgrove|Larkspur|Meadowbank|"
    "Stonebridge|Fallowfield|Windmere|Ashcombe|Briarwood|Duncastle|Foxley|Hollowmere|Juniper|Mistley"
)
_ORG_KINDS = _pool(
    "Water Board|Rail Trust|Housing Association|Energy Cooperative|Development Agency|Health Trust|"
    "Transport Authority|Port Authority|Heritage Trust|District Council"
)
_PLACES = _pool(
    "Tallow Cross|Brinmoor|Ashby Fen|Kelderwick|Port Elsin|Marrowby|Highcombe Down|Dunmere|Otterhythe|"
    "Salterne|Wexley Green|Caddon Bridge|Fennick|Larkhill End|Orrinsford|Quarrendon|Rookley Bay|Stanmere|"
    "Thornwick|Upper Haldon|Varnemouth|Wellingmoor|Yarrowby|Alderholt Cross|Brackenfold|Drayhaven|Elmsworth|"
    "Garrowfield|Hessingham|Idlecombe"
)
_PROJECTS = _pool(
    "tidal energy plant|footbridge|community hospital|light railway extension|flood barrier|swimming pool|"
    "science park|ferry terminal|wind farm|bus depot|recycling centre|concert hall|cycle path network|"
    "marine research station|secondary school|solar farm|harbour wall|covered market|sports stadium|"
    "district heating scheme"
)
_VERBS = _pool(
    "approved plans for|unveiled plans for|announced plans for|confirmed plans for|set out plans for|"
    "published plans for"
)
_ROLES = _pool("chief executive|chair|project director|spokesperson|head of planning|finance director")
_QUOTES = _pool(
    "a turning point for the town|long overdue|the biggest investment in a generation|a bold step|"
    "good news for families|a vote of confidence in the area|the start of a new chapter|a project to be proud of"
)
_FUNDERS = _pool(
    "the Northern Infrastructure Fund|the Coastal Communities Trust|a consortium of local businesses|"
    "the Weald Investment Bank|the Greyling Foundation|the Halden Charitable Trust|central government|"
    "the Osmond Pension Fund"
)
_GROUP_KINDS = _pool(
    "Civic Society|Residents Association|Ratepayers Alliance|Heritage Group|Chamber of Trade|Ramblers Club|"
    "Allotment Society|Fishermen's Guild"
)
_CRITICISMS = _pool("rushed|reckless|badly thought out|poorly costed|premature|short-sighted|ill-judged|unworkable")
_FORMER_USES = _pool(
    "a car park|a textile mill|a railway goods yard|a gasworks|a landfill site|an army barracks|a quarry|"
    "a brewery|a shipyard|a cattle market"
)
_SEASONS = _pool("spring|summer|autumn|winter")
_MONTHS = _pool("January|February|March|April|May|June|July|August|September|October|November|December")

# fact type -> sentence templates. A slot that can be an answer never opens a sentence, so it keeps its case.
_FACTS: dict[str, tuple[str, ...]] = {
    "lead": (
        "{org} {verb} {a_project} in {place} on {date}.",
        "On {date}, {org} {verb} {a_project} in {place}.",
        "{org} {verb} {a_project} on the edge of {place}, in an announcement made on {date}.",
    ),
    "person": (
        "{person}, the {role} of {org}, called the scheme {quote}.",
        '"This is {quote}," said {person}, {org}\'s {role}.',
        "The scheme was described as {quote} by {person}, who serves as {role} at {org}.",
    ),
    "cost": (
        "The {project} is expected to cost {amount}.",
        "Officials put the cost of the {project} at {amount}.",
        "A budget of {amount} has been set aside for the {project}.",
    ),
    "funder": (
        "Most of the money will come from {funder}.",
        "The bulk of the funding is being provided by {funder}.",
        "{org} said it had secured support from {funder}.",
    ),
    "jobs": (
        "It is expected to create {jobs} jobs.",
        "Some {jobs} jobs will be created, according to {org}.",
        "{org} said the project would bring {jobs} new jobs to the area.",
    ),
    "critic": (
        "{critic} of the {group} said the plans had been {criticism}.",
        "Not everyone is convinced: {critic}, from the {group}, called them {criticism}.",
        "The {group}, represented by {critic}, described the proposals as {criticism}.",
    ),
    "finish": (
        "Work is due to be completed by {finish}.",
        "The {project} should be ready by {finish}.",
        "{org} hopes to finish the work by {finish}.",
    ),
    "survey": (
        "A survey found that {percent} of residents supported the plan.",
        "In a public consultation, {percent} of respondents said they were in favour.",
        "Of the people who answered a consultation, {percent} backed the scheme.",
    ),
    "site": (
        "The site was previously used as {former_use}.",
        "The land, once home to {former_use}, has stood empty for years.",
        "It will be built on the site of {former_use}.",
    ),
    "vote": (
        "Councillors voted {vote} in favour of the plans.",
        "The plans were approved by {vote} at a meeting of the council in {place}.",
        "A council committee backed the scheme by {vote}.",
    ),
}  # fmt: skip
FACT_TYPES: tuple[str, ...] = tuple(_FACTS)

# question type -> (fact type whose sentence states the answer, question template, answer slot)
_QUESTIONS: dict[str, tuple[str, str, str]] = {
    "place": ("lead", "Where is {org}'s {project} to be built?", "place"),
    "date": ("lead", "On what date did {org} announce the plans for its {project}?", "date"),
    "person": ("person", "Who is the {role} of {org}?", "person"),
    "cost": ("cost", "How much is {org}'s {project} expected to cost?", "amount"),
    "funder": ("funder", "Who is providing most of the money for {org}'s {project}?", "funder"),
    "jobs": ("jobs", "How many jobs is {org}'s {project} expected to create?", "jobs"),
    "critic": ("critic", "Who spoke against {org}'s {project} for the {group}?", "critic"),
    "finish": ("finish", "When is {org}'s {project} due to be completed?", "finish"),
    "survey": ("survey", "What share of respondents backed {org}'s {project}?", "percent"),
    "site": ("site", "What occupied the site of {org}'s {project} before?", "former_use"),
    "vote": ("vote", "By what margin did councillors back {org}'s {project}?", "vote"),
}


# ---------------------------------------------------------------- generation


def generate_muse_news(
    out_dir: str | os.PathLike,
    articles_per_split: int = 16,
    sentences_per_article: int = 6,
    qa_per_article: int = 2,
    n_icl: int = 3,
    seed: int = 0,
) -> Path:
    """Write a mini MUSE-News (configs ``MUSE_NEWS_SPLITS``) to ``out_dir`` in the hub layout; return the path.

    Each of the four raw splits gets ``articles_per_split`` articles of ``sentences_per_article`` sentences
    (one fact each). The same arguments give byte-identical files.
    """
    tables, _ = _build(articles_per_split, sentences_per_article, qa_per_article, n_icl, seed)
    description = (
        "Mini MUSE-News written by `sga.data.muse_news.generate_muse_news` (fictitious news, not the "
        f"muse-bench/MUSE-News text): articles_per_split={articles_per_split}, "
        f"sentences_per_article={sentences_per_article}, qa_per_article={qa_per_article}, n_icl={n_icl}, "
        f"seed={seed}. The article behind each row: `sga.data.muse_news.muse_news_sources` with the same arguments."
    )
    return write_parquet_repo(out_dir, tables, description=description)


def muse_news_sources(
    articles_per_split: int = 16,
    sentences_per_article: int = 6,
    qa_per_article: int = 2,
    n_icl: int = 3,
    seed: int = 0,
) -> dict[str, dict[str, list[Source]]]:
    """For the corpus :func:`generate_muse_news` writes with the same arguments: per config and split, the
    ``(raw split, article index)`` each row comes from."""
    _, sources = _build(articles_per_split, sentences_per_article, qa_per_article, n_icl, seed)
    return sources


def _build(
    n: int, n_sentences: int, qa_per_article: int, n_icl: int, seed: int
) -> tuple[dict[str, dict[str, list[dict]]], dict[str, dict[str, list[Source]]]]:
    _check_sizes(n, n_sentences, qa_per_article, n_icl)
    rng = random.Random(seed)
    n_all = n * len(_RAW_SPLITS)
    orgs = rng.sample([f"{stem} {kind}" for stem, kind in itertools.product(_ORG_STEMS, _ORG_KINDS)], n_all)
    people = rng.sample([f"{first} {last}" for first, last in itertools.product(_FIRST, _LAST)], 2 * n_all)
    articles = [_draw_article(rng, orgs[i], people[2 * i : 2 * i + 2], n_sentences) for i in range(n_all)]
    by_split = {split: articles[i * n : (i + 1) * n] for i, split in enumerate(_RAW_SPLITS)}

    tables: dict[str, dict[str, list[dict]]] = {config: {} for config in MUSE_NEWS_SPLITS}
    sources: dict[str, dict[str, list[Source]]] = {config: {} for config in MUSE_NEWS_SPLITS}

    def put(config: str, split: str, rows: list[dict], origin: list[Source]) -> None:
        tables[config][split], sources[config][split] = rows, origin

    for split in _RAW_SPLITS:
        texts = [{"text": article["text"]} for article in by_split[split]]
        put("raw", split, texts, [(split, i) for i in range(n)])
        if split != "holdout":
            put("train", split, texts, [(split, i) for i in range(n)])
    for name, split in (("forget", "forget"), ("retain", EVAL_RETAIN_SPLIT), ("holdout", "holdout")):
        put("privleak", name, [{"text": a["text"]} for a in by_split[split]], [(split, i) for i in range(n)])
    cut = n_sentences // 2
    verbmem = [{"prompt": " ".join(a["sentences"][:cut]), "gt": " ".join(a["sentences"][cut:])} for a in by_split["forget"]]
    put("verbmem", "forget", verbmem, [("forget", i) for i in range(n)])
    for prefix, split in (("forget", "forget"), ("retain", EVAL_RETAIN_SPLIT)):
        asked = range(n - n_icl)
        qa = [(i, row) for i in asked for row in _draw_qa(rng, by_split[split][i], qa_per_article)]
        icl = [(i, _draw_qa(rng, by_split[split][i], 1)[0]) for i in range(n - n_icl, n)]
        put("knowmem", f"{prefix}_qa", [row for _, row in qa], [(split, i) for i, _ in qa])
        put("knowmem", f"{prefix}_qa_icl", [row for _, row in icl], [(split, i) for i, _ in icl])

    return _hub_order(tables), _hub_order(sources)


def _hub_order(by_config: dict[str, dict[str, list]]) -> dict[str, dict[str, list]]:
    return {config: {split: by_config[config][split] for split in splits} for config, splits in MUSE_NEWS_SPLITS.items()}


def _check_sizes(n: int, n_sentences: int, qa_per_article: int, n_icl: int) -> None:
    capacity = min(len(_ORG_STEMS) * len(_ORG_KINDS), len(_FIRST) * len(_LAST) // 2) // len(_RAW_SPLITS)
    if n_icl < 1:
        raise ValueError(f"n_icl must be at least 1 (the hub layout has non-empty ICL splits), got {n_icl}.")
    if not n_icl < n <= capacity:
        raise ValueError(
            f"articles_per_split must be in {n_icl + 1}..{capacity} (more than n_icl={n_icl}, so that some "
            f"articles are left to ask about, and within the distinct organisations), got {n}."
        )
    if not 2 <= n_sentences <= len(FACT_TYPES):
        raise ValueError(
            f"sentences_per_article must be in 2..{len(FACT_TYPES)} (a verbmem prompt and continuation; one fact "
            f"type per sentence), got {n_sentences}."
        )
    if not 1 <= qa_per_article <= n_sentences:
        raise ValueError(f"qa_per_article must be in 1..sentences_per_article={n_sentences}, got {qa_per_article}.")


def _draw_article(rng: random.Random, org: str, people: list[str], n_sentences: int) -> dict:
    """One article: its slot values, the fact types it states (lead first) and its sentences."""
    project = rng.choice(_PROJECTS)
    place = rng.choice(_PLACES)
    low_jobs = rng.randrange(4, 90)
    votes_for = rng.randrange(6, 30)
    slots = {
        "org": org,
        "project": project,
        "a_project": ("an " if project[0] in "aeiou" else "a ") + project,
        "verb": rng.choice(_VERBS),
        "place": place,
        "date": f"{rng.randint(1, 28)} {rng.choice(_MONTHS)}",
        "person": people[0],
        "role": rng.choice(_ROLES),
        "quote": rng.choice(_QUOTES),
        "amount": f"£{rng.randint(2, 95)}.{rng.randint(1, 9)} million",
        "funder": rng.choice(_FUNDERS),
        "jobs": str(10 * low_jobs),
        "critic": people[1],
        "group": f"{place} {rng.choice(_GROUP_KINDS)}",
        "criticism": rng.choice(_CRITICISMS),
        "finish": f"{rng.choice(_SEASONS)} {rng.randint(2027, 2034)}",
        "percent": f"{rng.randint(18, 84)}%",
        "former_use": rng.choice(_FORMER_USES),
        "vote": f"{votes_for} to {rng.randrange(1, votes_for)}",
    }
    facts = ["lead"] + rng.sample(FACT_TYPES[1:], n_sentences - 1)
    sentences = [_render(rng.choice(_FACTS[fact]), slots) for fact in facts]
    return {"slots": slots, "facts": facts, "sentences": sentences, "text": " ".join(sentences)}


def _render(template: str, slots: dict[str, str]) -> str:
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def _draw_qa(rng: random.Random, article: dict, k: int) -> list[dict]:
    """``k`` questions of distinct types about facts the article states, in question-type order."""
    askable = [name for name, (fact, _, _) in _QUESTIONS.items() if fact in article["facts"]]
    chosen = sorted(rng.sample(askable, k), key=list(_QUESTIONS).index)
    slots = article["slots"]
    return [
        {"question": _render(_QUESTIONS[name][1], slots), "answer": slots[_QUESTIONS[name][2]]} for name in chosen
    ]


def chunk_texts(tokenizer, texts: Sequence[str], chunk_tokens: int) -> list[str]:
    """Each text cut into pieces of at most ``chunk_tokens`` tokens (a text that fits is one piece), each cut
    made before a token that starts a word (a single word longer than a chunk is cut inside it).

    Texts are cut one by one, so every article starts a chunk, right after BOS, as VerbMem prompts it.
    (muse_bench packs a whole split into 2048-token chunks across article boundaries; a tiny model that
    memorised packed chunks does not recall an article from its start, so the spec keeps articles apart.)
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}.")
    chunks = [piece for text in texts if text and text.strip() for piece in _cut(tokenizer, text.strip(), chunk_tokens)]
    if not chunks:
        raise ValueError("There is no text to cut into chunks.")
    return chunks


def _cut(tokenizer, text: str, chunk_tokens: int) -> list[str]:
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts_word = [s == 0 or text[s - 1].isspace() or text[s].isspace() for s, _ in offsets]
    pieces, begin, n = [], 0, len(offsets)
    while begin < n:
        end = min(begin + chunk_tokens, n)
        if end < n:
            end = next((j for j in range(end, begin, -1) if starts_word[j]), end)
        piece = text[offsets[begin][0] : offsets[end][0] if end < n else len(text)].strip()
        if piece:
            pieces.append(piece)
        begin = end
    return pieces
