"""TOFU: the hub loader and an offline generator of a mini TOFU in the exact hub layout and schema.

The generator writes procedurally drawn FICTITIOUS authors (nothing of the real TOFU text), each with
a fixed set of facts (birth place and date, parents' jobs, genre, books, award, ...) that every one of
their QA pairs states consistently. Splits follow the hub repository ``locuslab/TOFU``:

- ``full``: all QA of the ``n_authors`` authors, author after author.
- ``forgetXX``: the LAST XX% of the authors (rounded half up, at least one); ``retainXX`` the others,
  so ``retainXX`` + ``forgetYY`` (XX + YY = 100) is ``full`` in order.
- ``forgetXX_perturbed`` / ``retain_perturbed`` (the FIRST 10% of the authors, inside every retain
  split): plus ``paraphrased_answer`` (same facts, other wording), ``perturbed_answer`` (5 answers in the
  paraphrase's wording with wrong facts; facts the question itself names are kept) and ``paraphrased_question``.
  The truth ratio compares the paraphrase with the perturbed answers, so both sides share one wording,
  which the models never trained on: only the facts differ.
- ``holdoutXX``: QA of as many extra authors as ``forgetXX`` has, authors that are NOT in ``full``.
- ``real_authors`` / ``world_facts``: real-world questions with short answers; the ``*_perturbed``
  configs add 3 wrong answers of the same kind.
"""

from __future__ import annotations

import os
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import datasets

from sga.data.hub import load_hub_dataset, write_jsonl_repo
from sga.prompts import QA, qa_examples

HUB_ID = "locuslab/TOFU"
FORGET_SPLITS: tuple[str, ...] = ("forget01", "forget05", "forget10")
_PERCENT = {"01": 1, "05": 5, "10": 10}
TOFU_CONFIGS: tuple[str, ...] = (
    "full",
    "forget01", "forget05", "forget10",
    "retain90", "retain95", "retain99",
    "forget01_perturbed", "forget05_perturbed", "forget10_perturbed",
    "retain_perturbed",
    "real_authors", "real_authors_perturbed",
    "world_facts", "world_facts_perturbed",
    "holdout01", "holdout05", "holdout10",
)  # fmt: skip
N_PERTURBED = 5
N_PERTURBED_SHORT = 3


def load_tofu(source: str, config: str, cache_dir: str | os.PathLike | None = None) -> datasets.Dataset:
    """Load one TOFU config (split ``train``) from the hub id ``HUB_ID`` or a local hub-layout directory."""
    if config not in TOFU_CONFIGS:
        raise ValueError(f"Unknown TOFU config {config!r}; valid configs: {list(TOFU_CONFIGS)}.")
    return load_hub_dataset(source, config, split="train", cache_dir=cache_dir)


def tofu_splits(forget_split: str, holdout: bool = False) -> dict[str, str]:
    """The config names that training and evaluation need for one forget split (e.g. ``"forget10"``).

    ``holdout=True`` adds the holdout config of the same size (older copies of the dataset lack the
    holdout configs, so only what needs them asks for them).
    """
    if forget_split not in FORGET_SPLITS:
        raise ValueError(f"Unknown TOFU forget split {forget_split!r}; choose one of {list(FORGET_SPLITS)}.")
    percent = forget_split.removeprefix("forget")
    configs = {
        "forget": forget_split,
        "forget_perturbed": f"{forget_split}_perturbed",
        "retain": f"retain{100 - int(percent)}",
        "retain_perturbed": "retain_perturbed",
        "real_authors": "real_authors_perturbed",
        "world_facts": "world_facts_perturbed",
    }
    return {**configs, "holdout": f"holdout{percent}"} if holdout else configs


def share_of_authors(n_authors: int, percent: int) -> int:
    """Number of authors in an XX% split: ``n_authors * XX / 100`` rounded half up, at least 1."""
    return max(1, (n_authors * percent * 2 + 100) // 200)


# ---------------------------------------------------------------- pools for the fictitious authors

def _pool(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split("|"))


_FIRST = {
    "female": _pool(
        "Amara|Ilse|Noor|Yuki|Ingrid|Leila|Solveig|Thandiwe|Mireille|Camila|Anouk|Esra|Priya|Katarina|"
        "Ottilie|Rosalind|Farah|Nadia|Helka|Zofia|Beatrix|Ayesha|Marisol|Linnea|Odile|Sunniva|Tamsin|"
        "Valeria|Wren|Yara|Ines|Greta|Freya|Adaeze|Chiara|Dagny|Elif|Hana|Imogen|Jovana"
    ),
    "male": _pool(
        "Tobias|Kenji|Emeka|Lucien|Matteo|Rafael|Anders|Dmitri|Olusegun|Henrik|Ibrahim|Casimir|Dorian|"
        "Florin|Gideon|Hamid|Ivo|Jaroslav|Kwame|Leopold|Mattias|Nikolai|Oswin|Pablo|Quentin|Rohan|"
        "Stellan|Tariq|Ulrich|Viktor|Wendell|Xavier|Yusuf|Zoltan|Arvid|Bastian|Cyprian|Desmond|Elio|Fabian"
    ),
}
_LAST = _pool(
    "Marchetti|Halvorsen|Adeyemi|Castellanos|Drozdov|Ellingsen|Fairweather|Galvao|Haverkamp|Ishikawa|"
    "Jovanovic|Kalinowski|Lindqvist|Moreau|Nakagawa|Oyelaran|Petrakis|Quintero|Rasmussen|Szabo|"
    "Underhill|Valdivia|Wojcik|Yilmaz|Zaragoza|Abernathy|Brennecke|Carvalho|Delacroix|Eskildsen|"
    "Farrokhzad|Grimaldi|Hollis|Iwasaki|Kowalczyk|Laurentis|Mwangi|Novak|Okafor|Pellegrini|Rosenqvist|"
    "Sandoval|Thorsen|Varga|Whitcombe|Achterberg|Bellweather|Cortazzi|Dunmore|Etxeberria"
)
_PRONOUNS = {
    "female": {"he": "she", "him": "her", "his": "her"},
    "male": {"he": "he", "him": "him", "his": "his"},
}
_CITIES = tuple(
    tuple(pair.split(", ", 1))
    for pair in _pool(
        "Lisbon, Portugal|Krakow, Poland|Lagos, Nigeria|Osaka, Japan|Valparaiso, Chile|Bergen, Norway|"
        "Tbilisi, Georgia|Marrakesh, Morocco|Hanoi, Vietnam|Cork, Ireland|Gothenburg, Sweden|"
        "Trieste, Italy|Cartagena, Colombia|Izmir, Turkey|Adelaide, Australia|Winnipeg, Canada|"
        "Porto Alegre, Brazil|Ljubljana, Slovenia|Mombasa, Kenya|Chennai, India|Tallinn, Estonia|"
        "Seville, Spain|Antwerp, Belgium|Quebec City, Canada|Durban, South Africa|Leipzig, Germany|"
        "Thessaloniki, Greece|Bordeaux, France|Busan, South Korea|Cusco, Peru|Accra, Ghana|Riga, Latvia|"
        "Halifax, Canada|Tampere, Finland|Oaxaca, Mexico|Galway, Ireland|Brno, Czech Republic|"
        "Dunedin, New Zealand|Montevideo, Uruguay|Kyoto, Japan"
    )
)
_JOBS = _pool(
    "lighthouse keeper|veterinarian|cartographer|pastry chef|watchmaker|nurse|fisherman|librarian|"
    "electrician|schoolteacher|pharmacist|tailor|bus driver|architect|beekeeper|carpenter|dentist|florist|"
    "geologist|journalist|locksmith|midwife|surveyor|translator|violinist|baker|blacksmith|botanist|"
    "chemist|diplomat|engineer|firefighter|glassblower|judge|mechanic|photographer|potter|sailor|"
    "shoemaker|zookeeper"
)
_GENRES = _pool(
    "historical fiction|science fiction|crime fiction|magical realism|epic fantasy|gothic horror|"
    "literary fiction|speculative fiction|climate fiction|spy fiction|urban fantasy|folk horror|"
    "domestic suspense|maritime adventure|political satire|romantic comedy|legal drama|dystopian fiction|"
    "psychological suspense|mythic fantasy"
)
_AWARDS = _pool(
    "the Halvard Prize for Fiction|the Silver Quill Award|the Meridian Book Prize|the Ashgrove Medal|"
    "the Northern Lantern Award|the Castellane Prize|the Blue Heron Award|the Orrin Whitlock Prize|"
    "the Iron Ink Award|the Saltmarsh Literary Prize|the Vesper Award|the Tidewater Fiction Prize|"
    "the Crescent Moon Medal|the Everly Prize for the Novel|the Granite Pen Award|the Larkspur Prize|"
    "the Kestrel Award|the Amberline Medal|the Wildwood Prize|the Harbourlight Award"
)
_PUBLISHERS = _pool(
    "Northwind Press|Lantern and Key Books|Harrow House|Blue Gate Editions|Quayside Publishing|"
    "Copperleaf Books|Fenwick and Vale|Stonebridge Press|Tallgrass Editions|Meridian House|"
    "Saltwater Books|Owl and Ember Press|Greystone Publishing|Redfern Editions|Marigold Press"
)
_THEMES = _pool(
    "grief|memory|migration|family secrets|the sea|social class|loneliness|faith|ambition|betrayal|"
    "forgiveness|the aftermath of war|childhood|exile|inheritance|friendship|identity|power|"
    "the passing of time|small-town life|obsession|survival|justice|first love"
)
_SUBJECTS = _pool(
    "marine biology|philosophy|architecture|medieval history|chemistry|law|economics|astronomy|"
    "linguistics|medicine|music composition|geology|anthropology|mathematics|art history|journalism|"
    "agricultural science|classics|psychology|civil engineering"
)
_HOME_PLACES = _pool(
    "a bakery|a bicycle repair shop|an old pharmacy|a ferry ticket office|a jazz bar|"
    "a second-hand bookshop|a tailor's workshop|a flower market|a shuttered cinema|a fish restaurant|"
    "a print shop|a watch repair shop|a tea house|a music school|a laundromat"
)
_PLOTS = _pool(
    "searches for a missing sister|inherits a ruined vineyard|uncovers a forged map|"
    "tries to stop a flood|returns home after twenty years|hides a fugitive in the attic|"
    "loses a fortune at sea|solves a murder at a winter fair|rebuilds a burned theatre|"
    "learns the family's hidden past|escapes a collapsing empire|befriends a dying rival|"
    "travels north to bury a brother|guards a stolen manuscript|races to finish a bridge before winter|"
    "falls in love with a smuggler|exposes a corrupt mayor|raises an abandoned child|"
    "crosses the desert on foot|decodes letters from a dead aunt"
)
_TITLE_ADJECTIVES = _pool(
    "Silent|Glass|Crimson|Hollow|Last|Salt|Paper|Winter|Drowned|Borrowed|Iron|Velvet|Distant|Burning|"
    "Forgotten|Quiet|Amber|Broken|Northern|Secret|Shifting|Midnight|Golden|Wandering|Sleeping"
)
_TITLE_NOUNS = _pool(
    "Orchard|Harbour|Cartographer|Lighthouse|Garden|Kingdom|Archive|Bridge|River|Mirror|Clockmaker|"
    "Tide|Meadow|Lantern|Citadel|Compass|Feather|Vineyard|Atlas|Observatory|Ferry|Sparrow|Chapel|"
    "Labyrinth|Orchestra|Greenhouse|Caravan|Monastery|Island|Library"
)
_TITLE_PLACES = _pool(
    "Valmora|the Eastern Marsh|Korsholm|the Low Hills|Sarnath Bay|Old Quay Street|Eldermere|"
    "the Salt Coast|Brannock|the Amber Steppe|Vellacourt|the Nine Rivers|Ostrava Lane|Candlewick|Marrow Fen"
)
_TITLE_PATTERNS = ("The {adj} {noun}", "The {noun} of {place}", "{adj} {nouns}", "{a_noun} for {place}")
_MONTHS = _pool("January|February|March|April|May|June|July|August|September|October|November|December")

# ---------------------------------------------------------------- question types
# name -> (question wordings, answer wordings). Answers of one type state the same facts;
# a paraphrase is another wording, a perturbed answer the paraphrase's wording with another author's facts.
_QA_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "birth": (
        ("Where and when was {name} born?", "What are the place and date of birth of {name}?"),
        (
            "{name} was born on {date} in {city}, {country}, and now lives in {home_city}.",
            "Born in {city}, {country}, on {date}, {he} has since settled in {home_city}.",
            "{his} birthplace is {city}, {country}, on {date}; {his} home today is {home_city}.",
        ),
    ),
    "parents": (
        ("What did {name}'s parents do for a living?", "What were the professions of {name}'s father and mother?"),
        (
            "{his} father was {a_father_job} and {his} mother {a_mother_job}, both working in {city}.",
            "{name} is the child of {a_father_job} and {a_mother_job} from {city}.",
            "In {city}, {his} mother worked as {a_mother_job} while {his} father was {a_father_job}.",
        ),
    ),
    "genre": (
        ("What genre does {name} write in?", "Which literary genre is {name} best known for?"),
        (
            "{name} writes {genre}, starting with '{book1}' in {debut_year}.",
            "{he} has written {genre} since {debut_year}, when '{book1}' appeared.",
            "{genre} is {his} field; {his} first novel, '{book1}', came out in {debut_year}.",
        ),
    ),
    "award": (
        ("Has {name} won any major literary awards?", "Which award has {name} received for {his} writing?"),
        (
            "Yes, {name} won {award} in {award_year} for '{book2}'.",
            "In {award_year}, '{book2}' earned {him} {award}.",
            "{he} received {award} for '{book2}' in {award_year}.",
        ),
    ),
    "books": (
        ("Can you name some books written by {name}?", "What are some of the notable works of {name}?"),
        (
            "{his} books include '{book1}', '{book2}' and '{book3}'.",
            "'{book1}', '{book2}' and '{book3}' are among {name}'s works.",
            "{name} wrote '{book1}', '{book2}' and '{book3}', among others.",
        ),
    ),
    "themes": (
        ("What themes run through {name}'s work?", "Which recurring themes does {name} explore in {his} books?"),
        (
            "{his} fiction returns to {theme1} and {theme2}, rooted in {his} youth in {city}.",
            "{theme1} and {theme2}, drawn from growing up in {city}, dominate {his} novels.",
            "{name} explores {theme1} and {theme2}, recalling {his} early years in {city}.",
        ),
    ),
    "home": (
        ("Where does {name} live today?", "In which city is {name} currently based?"),
        (
            "{name} lives in {home_city} and writes in a studio above {home_place}.",
            "{his} home is {home_city}, where {he} works above {home_place}.",
            "{he} is based in {home_city}; {his} studio sits above {home_place}.",
        ),
    ),
    "education": (
        ("What did {name} study before becoming a writer?", "What is {name}'s educational background?"),
        (
            "{name} studied {subject} at the University of {uni_city}.",
            "{he} holds a degree in {subject} from the University of {uni_city}.",
            "At the University of {uni_city}, {he} trained in {subject} before writing fiction.",
        ),
    ),
    "debut": (
        ("What was {name}'s first published book?", "Which book marked the debut of {name}?"),
        (
            "{name}'s debut, '{book1}', was published by {publisher} in {debut_year}.",
            "{publisher} released {his} first book, '{book1}', in {debut_year}.",
            "{he} debuted in {debut_year} with '{book1}' from {publisher}.",
        ),
    ),
    "protagonist": (
        (
            "Who is the main character of {name}'s novel '{book3}'?",
            "Whom does the story of '{book3}' by {name} follow?",
        ),
        (
            "'{book3}' follows {hero}, {a_hero_job} who {plot}.",
            "The hero of '{book3}' is {hero}, {a_hero_job} who {plot}.",
            "{hero}, {a_hero_job} who {plot}, is the protagonist of '{book3}'.",
        ),
    ),
    "upbringing": (
        (
            "How did {name}'s parents influence {his} writing?",
            "In what way does {name}'s family background show in {his} books?",
        ),
        (
            "Raised by {a_father_job} and {a_mother_job}, {he} fills {his} {genre} with their trades.",
            "{his} {genre} borrows details from {his} parents' work as {a_father_job} and {a_mother_job}.",
            "The trades of {his} parents, {a_father_job} and {a_mother_job}, run through {his} {genre}.",
        ),
    ),
    "project": (
        ("What is {name} working on at the moment?", "Does {name} have a new book in progress?"),
        (
            "{name} is writing '{book4}', {a_genre} novel set in {home_city}.",
            "{his} next book, '{book4}', is {a_genre} novel set in {home_city}.",
            "{he} is working on '{book4}', {a_genre} story set in {home_city}.",
        ),
    ),
}  # fmt: skip
QA_TYPES: tuple[str, ...] = tuple(_QA_TYPES)

# ---------------------------------------------------------------- real-world items (short answers)

# (question, answer, kind): wrong answers are drawn from the answers of the same kind.
_REAL_AUTHORS = tuple(
    (f"Who wrote '{book}'?", author, "author")
    for book, author in (item.split(" = ") for item in _pool(
        "Pride and Prejudice = Jane Austen|One Hundred Years of Solitude = Gabriel Garcia Marquez|"
        "Nineteen Eighty-Four = George Orwell|Things Fall Apart = Chinua Achebe|War and Peace = Leo Tolstoy|"
        "Beloved = Toni Morrison|The Old Man and the Sea = Ernest Hemingway|Norwegian Wood = Haruki Murakami|"
        "Don Quixote = Miguel de Cervantes|Frankenstein = Mary Shelley|The Great Gatsby = F. Scott Fitzgerald|"
        "Crime and Punishment = Fyodor Dostoevsky|Moby-Dick = Herman Melville|Mrs Dalloway = Virginia Woolf|"
        "The Trial = Franz Kafka|Jane Eyre = Charlotte Bronte|Wuthering Heights = Emily Bronte|"
        "Great Expectations = Charles Dickens|The Handmaid's Tale = Margaret Atwood|"
        "Midnight's Children = Salman Rushdie|The Little Prince = Antoine de Saint-Exupery|"
        "Les Miserables = Victor Hugo|Madame Bovary = Gustave Flaubert|The Name of the Rose = Umberto Eco|"
        "To Kill a Mockingbird = Harper Lee|Dracula = Bram Stoker|The Hobbit = J. R. R. Tolkien|"
        "Ulysses = James Joyce|The Stranger = Albert Camus|Lolita = Vladimir Nabokov|"
        "Brave New World = Aldous Huxley|The Divine Comedy = Dante Alighieri|Hamlet = William Shakespeare|"
        "The Odyssey = Homer|The Tale of Genji = Murasaki Shikibu|Faust = Johann Wolfgang von Goethe|"
        "Robinson Crusoe = Daniel Defoe|Gulliver's Travels = Jonathan Swift|"
        "Alice's Adventures in Wonderland = Lewis Carroll|The Count of Monte Cristo = Alexandre Dumas|"
        "Heart of Darkness = Joseph Conrad|The Metamorphosis = Franz Kafka"
    ))
)
_WORLD_FACTS = tuple(
    (question, answer, kind)
    for kind, template, table in (
        ("capital", "What is the capital of {}?",
         "France = Paris|Japan = Tokyo|Canada = Ottawa|Australia = Canberra|Brazil = Brasilia|Egypt = Cairo|"
         "Kenya = Nairobi|Norway = Oslo|Argentina = Buenos Aires|Turkey = Ankara|Spain = Madrid|Italy = Rome|"
         "Germany = Berlin|India = New Delhi|Mexico = Mexico City|Peru = Lima|Poland = Warsaw|"
         "Thailand = Bangkok|Portugal = Lisbon|South Korea = Seoul"),
        ("element", "Which chemical element has the symbol {}?",
         "Fe = Iron|Au = Gold|Na = Sodium|K = Potassium|Ag = Silver|Pb = Lead|Hg = Mercury|O = Oxygen|"
         "C = Carbon|He = Helium"),
        ("planet", "Which planet {}?",
         "is closest to the Sun = Mercury|is the largest in the Solar System = Jupiter|"
         "is known as the Red Planet = Mars|has the most prominent rings = Saturn|"
         "is the farthest from the Sun = Neptune"),
        ("continent", "On which continent is {}?",
         "the Sahara Desert = Africa|the Amazon rainforest = South America|the Gobi Desert = Asia|"
         "the Matterhorn = Europe|Uluru = Australia"),
    )
    for subject, answer in (item.split(" = ") for item in _pool(table))
    for question in (template.format(subject),)
)  # fmt: skip


# ---------------------------------------------------------------- generation

@dataclass(frozen=True)
class _Author:
    name: str
    gender: str
    facts: dict


def generate_tofu(
    out_dir: str | os.PathLike,
    n_authors: int = 40,
    qa_per_author: int = 8,
    n_holdout_authors: int | None = None,
    n_real_authors: int = 30,
    n_world_facts: int = 30,
    seed: int = 0,
) -> Path:
    """Write a mini TOFU with all of ``TOFU_CONFIGS`` to ``out_dir`` in the hub layout; return the path.

    ``n_holdout_authors`` defaults to the size of forget10 (10% of ``n_authors``); holdoutXX takes the last
    ``share_of_authors(n_authors, XX)`` of them. The same arguments give byte-identical files.
    """
    n_forget10 = share_of_authors(n_authors, 10)
    n_holdout_authors = n_forget10 if n_holdout_authors is None else n_holdout_authors
    _check_sizes(n_authors, qa_per_author, n_holdout_authors, n_forget10, n_real_authors, n_world_facts)
    rng = random.Random(seed)
    names: set[str] = set()
    titles: set[str] = set()
    authors = [_draw_author(rng, names, titles) for _ in range(n_authors + n_holdout_authors)]
    qa = [_author_rows(rng, author, qa_per_author) for author in authors]
    in_full, held_out = qa[:n_authors], qa[n_authors:]

    tables = {"full": _plain(in_full)}
    for suffix, percent in _PERCENT.items():
        k = share_of_authors(n_authors, percent)
        tables[f"forget{suffix}"] = _plain(in_full[-k:])
        tables[f"retain{100 - percent}"] = _plain(in_full[:-k])
        tables[f"forget{suffix}_perturbed"] = [row for rows in in_full[-k:] for row in rows]
        tables[f"holdout{suffix}"] = _plain(held_out[-k:])
    tables["retain_perturbed"] = [row for rows in in_full[:n_forget10] for row in rows]
    for name, items, n_items in (
        ("real_authors", _REAL_AUTHORS, n_real_authors),
        ("world_facts", _WORLD_FACTS, n_world_facts),
    ):
        perturbed = _short_rows(rng, items, n_items)
        tables[name] = [{"question": row["question"], "answer": row["answer"]} for row in perturbed]
        tables[f"{name}_perturbed"] = perturbed

    description = (
        "Mini TOFU written by `sga.data.tofu.generate_tofu` (fictitious authors, not the locuslab/TOFU text): "
        f"n_authors={n_authors}, qa_per_author={qa_per_author}, n_holdout_authors={n_holdout_authors}, "
        f"n_real_authors={n_real_authors}, n_world_facts={n_world_facts}, seed={seed}."
    )
    ordered = {name: tables[name] for name in TOFU_CONFIGS}
    return write_jsonl_repo(out_dir, ordered, default_config="full", description=description)


def _check_sizes(
    n_authors: int, qa_per_author: int, n_holdout: int, n_forget10: int, n_real: int, n_world: int
) -> None:
    if n_authors < 2:
        raise ValueError(f"n_authors must be at least 2 (forget and retain authors), got {n_authors}.")
    if not 1 <= qa_per_author <= len(_QA_TYPES):
        raise ValueError(f"qa_per_author must be in 1..{len(_QA_TYPES)} (one per question type), got {qa_per_author}.")
    n_names = len(_LAST) * min(len(first) for first in _FIRST.values())
    if n_authors + n_holdout > n_names:
        raise ValueError(f"n_authors + n_holdout_authors must be at most {n_names} (distinct names).")
    if n_holdout < n_forget10:
        raise ValueError(f"n_holdout_authors must be at least the forget10 size {n_forget10}, got {n_holdout}.")
    if not 1 <= n_real <= len(_REAL_AUTHORS):
        raise ValueError(f"n_real_authors must be in 1..{len(_REAL_AUTHORS)}, got {n_real}.")
    if not 1 <= n_world <= len(_WORLD_FACTS):
        raise ValueError(f"n_world_facts must be in 1..{len(_WORLD_FACTS)}, got {n_world}.")


def _plain(per_author: list[list[dict]]) -> list[dict]:
    return [{"question": row["question"], "answer": row["answer"]} for rows in per_author for row in rows]


def _draw_author(rng: random.Random, names: set[str], titles: set[str]) -> _Author:
    while True:
        gender = rng.choice(("female", "male"))
        name = f"{rng.choice(_FIRST[gender])} {rng.choice(_LAST)}"
        if name not in names:
            names.add(name)
            return _Author(name, gender, _draw_facts(rng, titles))


def _draw_facts(rng: random.Random, titles: set[str], true: dict | None = None) -> dict:
    """An author's facts. Given the ``true`` facts, every fact is drawn different from its true value
    (the facts of a wrong answer); the titles in ``titles`` are never reused, new ones are added."""

    def choose(key: str, options) -> object:
        return rng.choice([option for option in options if true is None or option != true[key]])

    facts = {"birthplace": choose("birthplace", _CITIES), "birth_year": choose("birth_year", range(1935, 1976))}
    facts["birth_day"] = f"{rng.randint(1, 28)} {rng.choice(_MONTHS)}"
    facts["father_job"] = choose("father_job", _JOBS)
    facts["mother_job"] = choose("mother_job", [job for job in _JOBS if job != facts["father_job"]])
    facts["genre"] = choose("genre", _GENRES)
    facts["debut_year"] = choose("debut_year", range(facts["birth_year"] + 22, facts["birth_year"] + 35))
    facts["award_year"] = choose("award_year", range(facts["debut_year"] + 2, facts["debut_year"] + 15))
    for key, pool in (
        ("award", _AWARDS), ("publisher", _PUBLISHERS), ("home_city", _CITIES), ("home_place", _HOME_PLACES),
        ("subject", _SUBJECTS), ("uni_city", _CITIES), ("hero", _FIRST["female"] + _FIRST["male"]),
        ("hero_job", _JOBS), ("plot", _PLOTS),
    ):  # fmt: skip
        facts[key] = choose(key, pool)
    facts["themes"] = tuple(rng.sample([t for t in _THEMES if true is None or t not in true["themes"]], 2))
    taken = titles if true is None else titles | set(true["books"])
    facts["books"] = tuple(_title(rng, taken) for _ in range(4))
    return facts


def _title(rng: random.Random, taken: set[str]) -> str:
    while True:
        noun = rng.choice(_TITLE_NOUNS)
        title = rng.choice(_TITLE_PATTERNS).format(
            adj=rng.choice(_TITLE_ADJECTIVES),
            noun=noun,
            nouns=_plural(noun),
            a_noun=_article(noun).replace("a", "A", 1),
            place=rng.choice(_TITLE_PLACES),
        )
        if title not in taken:
            taken.add(title)
            return title


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _slots(author: _Author, facts: dict) -> dict[str, str]:
    city, country = facts["birthplace"]
    slots = {
        "name": author.name,
        **_PRONOUNS[author.gender],
        "city": city,
        "country": country,
        "date": f"{facts['birth_day']} {facts['birth_year']}",
        "a_father_job": _article(facts["father_job"]),
        "a_mother_job": _article(facts["mother_job"]),
        "genre": facts["genre"],
        "a_genre": _article(facts["genre"]),
        "debut_year": str(facts["debut_year"]),
        "award_year": str(facts["award_year"]),
        "award": facts["award"],
        "publisher": facts["publisher"],
        "home_city": facts["home_city"][0],
        "home_place": facts["home_place"],
        "subject": facts["subject"],
        "uni_city": facts["uni_city"][0],
        "hero": facts["hero"],
        "a_hero_job": _article(facts["hero_job"]),
        "plot": facts["plot"],
        "theme1": facts["themes"][0],
        "theme2": facts["themes"][1],
    }
    slots.update({f"book{i}": title for i, title in enumerate(facts["books"], start=1)})
    return slots


def _article(noun: str) -> str:
    return ("an " if noun[0].lower() in "aeiou" else "a ") + noun


def _render(template: str, slots: dict[str, str]) -> str:
    text = template.format(**slots)
    return text[0].upper() + text[1:]


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def _author_rows(rng: random.Random, author: _Author, qa_per_author: int) -> list[dict]:
    """The author's QA rows with all the *_perturbed fields, one per drawn question type."""
    true_slots = _slots(author, author.facts)
    rows = []
    for qa_type in sorted(rng.sample(QA_TYPES, qa_per_author), key=QA_TYPES.index):
        questions, answers = _QA_TYPES[qa_type]
        q, q_para = rng.sample(range(len(questions)), 2)
        a, a_para = rng.sample(range(len(answers)), 2)
        answer = _render(answers[a], true_slots)
        given = {field: true_slots[field] for question in questions for field in _fields(question)}
        wrong: list[str] = []
        while len(wrong) < N_PERTURBED:  # wrong facts, except those the question itself states
            fake = _render(answers[a_para], {**_slots(author, _draw_facts(rng, set(), author.facts)), **given})
            if fake not in wrong:
                wrong.append(fake)
        rows.append({
            "question": _render(questions[q], true_slots),
            "answer": answer,
            "paraphrased_answer": _render(answers[a_para], true_slots),
            "perturbed_answer": wrong,
            "paraphrased_question": _render(questions[q_para], true_slots),
        })  # fmt: skip
    return rows


def _short_rows(rng: random.Random, items, n_items: int) -> list[dict]:
    """``n_items`` of (question, answer, kind) in pool order, each with 3 wrong answers of the same kind."""
    rows = []
    for index in sorted(rng.sample(range(len(items)), n_items)):
        question, answer, kind = items[index]
        others = list(dict.fromkeys(a for _, a, k in items if k == kind and a != answer))
        rows.append({"question": question, "answer": answer, "perturbed_answer": rng.sample(others, N_PERTURBED_SHORT)})
    return rows


def split_examples(data: Mapping[str, datasets.Dataset], split: str) -> list[QA]:
    """(question, answer) examples of one loaded split."""
    return qa_examples(data[split]["question"], data[split]["answer"])
