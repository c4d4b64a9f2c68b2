"""Harry Potter (copyright takedown): the book passages in their two public forms, and offline stand-ins.

Nothing of the books is shipped or fetched. ``data_source`` selects one of:

- a folder of SOUL / FLAT JSON Lines files ``hp_{train,test}_qa_{k}.jsonl``, each line
  ``{"prompt": instruction + the first k words of a passage, "response": the rest}``, read as they are;
- a ``.txt`` file of book text (one text);
- the MUSE-Books hub id ``muse-bench/MUSE-Books`` or a local folder in its layout (config ``raw``, split
  ``forget``, field ``text``, one row per book).

Raw text (the last two) goes through the functions the generator uses: :func:`split_passages` cuts each
book on whitespace into consecutive passages of exactly ``words_per_passage`` words (a book's shorter
tail is dropped; passages never straddle two books), the passages alternate between the splits in book
order (even-numbered ``train``, odd-numbered ``test``: like SOUL's two files, two disjoint sets of
passages of the same books), and :func:`completion_rows` writes one row per passage and instruction of
:data:`INSTRUCTIONS`: prompt = instruction, newline, the first k words; response = the remaining words.

:func:`generate_harry_potter` writes a FICTIONAL saga (its own school, houses, characters, spells,
creatures and quests, drawn by seed) in both forms. The general-text stand-in for WikiText-2 (perplexity,
the pool of normal samples) lives in :mod:`sga.data.wikitext`.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Sequence

from sga.data.hub import load_hub_dataset, write_parquet_repo

MUSE_BOOKS_ID = "muse-bench/MUSE-Books"
SPLITS: tuple[str, ...] = ("train", "test")
SOUL_DIR, MUSE_DIR = "soul", "muse_books"  # the two forms inside a generate_harry_potter folder
# Six ways of asking for the rest of a passage (our wording; SOUL's files use six of their own).
INSTRUCTIONS: tuple[str, ...] = (
    "Continue the following passage from the book:",
    "Here is the opening of a passage. Write what comes next.",
    "Complete this excerpt exactly as it appears in the novel:",
    "Carry on the text below, word for word:",
    "How does this passage go on? Finish it.",
    "Read the beginning of this passage and write the rest of it:",
)
_SOUL_FILE = re.compile(r"hp_(train|test)_qa_(\d+)\.jsonl")


# ---------------------------------------------------------------- passages and prompts (shared by all forms)

def split_passages(text: str, words_per_passage: int) -> list[str]:
    """Consecutive passages of exactly ``words_per_passage`` whitespace words of ``text``, words joined
    by single spaces; a last, shorter piece is dropped."""
    if words_per_passage < 1:
        raise ValueError(f"words_per_passage must be at least 1, got {words_per_passage}.")
    words = text.split()
    starts = range(0, len(words) - words_per_passage + 1, words_per_passage)
    return [" ".join(words[i : i + words_per_passage]) for i in starts]


def completion_rows(passages: Sequence[str], prompt_length: int) -> list[dict[str, str]]:
    """One ``{"prompt", "response"}`` row per passage and instruction, passage after passage.

    prompt = instruction + newline + the first ``prompt_length`` words; response = the other words.
    """
    if prompt_length < 1:
        raise ValueError(f"prompt_length must be at least 1 word, got {prompt_length}.")
    rows = []
    for index, passage in enumerate(passages):
        words = passage.split()
        if len(words) <= prompt_length:
            raise ValueError(
                f"Passage {index} has {len(words)} words, no more than the prompt length {prompt_length}: nothing "
                "would be left to complete. Use longer passages (words_per_passage) or a shorter prompt."
            )
        head, rest = " ".join(words[:prompt_length]), " ".join(words[prompt_length:])
        rows.extend({"prompt": f"{instruction}\n{head}", "response": rest} for instruction in INSTRUCTIONS)
    return rows


# ---------------------------------------------------------------- loaders

def load_hp_completions(
    data_source: str | os.PathLike,
    prompt_length: int,
    split: str = "train",
    words_per_passage: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[dict[str, str]]:
    """The ``{"prompt", "response"}`` rows of one split for prompts of ``prompt_length`` words.

    A SOUL folder gives its file ``hp_{split}_qa_{prompt_length}.jsonl`` as it is; raw text (a ``.txt``
    file, MUSE-Books) needs ``words_per_passage`` and goes through :func:`completion_rows`.
    """
    _check_split(split)
    kind = _source_kind(data_source)
    if kind == "soul":
        folder = Path(data_source).expanduser()
        available = soul_prompt_lengths(folder, split)
        if prompt_length not in available:
            raise ValueError(
                f"No hp_{split}_qa_{prompt_length}.jsonl in {folder}: prompt lengths available for {split!r} are "
                f"{list(available)}. Pick one of them, or pass raw book text to cut prompts of any length."
            )
        return _read_soul(folder / f"hp_{split}_qa_{prompt_length}.jsonl")
    return completion_rows(_raw_passages(data_source, kind, split, words_per_passage, cache_dir), prompt_length)


def load_hp_passages(
    data_source: str | os.PathLike,
    split: str = "train",
    words_per_passage: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[str]:
    """The passages of one split (the forget texts), each once, words joined by single spaces.

    Raw text is cut by :func:`split_passages` (``words_per_passage`` required). A SOUL folder has no raw
    text: each passage is rebuilt from its smallest-k file as the prompt's last k words plus the
    response (whatever the instruction), so ``words_per_passage`` is not used there.
    """
    _check_split(split)
    kind = _source_kind(data_source)
    if kind != "soul":
        return _raw_passages(data_source, kind, split, words_per_passage, cache_dir)
    folder = Path(data_source).expanduser()
    available = soul_prompt_lengths(folder, split)
    if not available:
        raise ValueError(f"No hp_{split}_qa_<k>.jsonl file in {folder}; the SOUL layout has one per split and k.")
    k = available[0]
    rows = _read_soul(folder / f"hp_{split}_qa_{k}.jsonl")
    return list(dict.fromkeys(" ".join(row["prompt"].split()[-k:] + row["response"].split()) for row in rows))


def soul_prompt_lengths(folder: str | os.PathLike, split: str = "train") -> tuple[int, ...]:
    """The prompt lengths k of the ``hp_{split}_qa_{k}.jsonl`` files in ``folder``, ascending."""
    _check_split(split)
    matches = (_SOUL_FILE.fullmatch(path.name) for path in Path(folder).expanduser().iterdir())
    return tuple(sorted(int(m.group(2)) for m in matches if m and m.group(1) == split))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"Unknown Harry Potter split {split!r}; choose one of {list(SPLITS)}.")


def _source_kind(data_source: str | os.PathLike) -> str:
    """``soul``, ``text`` or ``muse`` (a hub id or a local hub-layout folder)."""
    forms = (
        "data_source must be a folder of SOUL hp_{train,test}_qa_{k}.jsonl files, a .txt file of book text, "
        f"or the MUSE-Books hub id {MUSE_BOOKS_ID!r} / a local folder in its layout (config raw, split forget)"
    )
    path = Path(data_source).expanduser()
    if path.is_file():
        if path.suffix == ".txt":
            return "text"
        raise ValueError(f"{path} is a file but not a .txt of book text; {forms}.")
    if path.is_dir():
        if any(_SOUL_FILE.fullmatch(p.name) for p in path.iterdir()):
            return "soul"
        if (path / "README.md").is_file():
            return "muse"
        raise ValueError(f"{path} holds neither hp_*_qa_*.jsonl files nor a hub-layout README.md; {forms}.")
    text = str(data_source)
    if path.suffix in (".txt", ".jsonl") or path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1:
        raise FileNotFoundError(f"No such file or folder: {text!r}. {forms}.")
    return "muse"  # an "owner/name" hub id


def _read_soul(path: Path) -> list[dict[str, str]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not JSON ({error}).") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(key), str) for key in ("prompt", "response")):
            raise ValueError(f"{path} line {number} needs string fields 'prompt' and 'response'; got {line[:80]!r}.")
        rows.append({"prompt": row["prompt"], "response": row["response"]})
    if not rows:
        raise ValueError(f"{path} has no rows.")
    return rows


def _read_books(data_source: str | os.PathLike, kind: str, cache_dir: str | os.PathLike | None) -> list[str]:
    if kind == "text":
        books = [Path(data_source).expanduser().read_text(encoding="utf-8")]
    else:
        dataset = load_hub_dataset(str(data_source), "raw", split="forget", cache_dir=cache_dir)
        if "text" not in dataset.column_names:
            raise ValueError(f"{data_source} raw/forget has no 'text' field (fields: {dataset.column_names}).")
        books = list(dataset["text"])
    if not any(book and book.strip() for book in books):
        raise ValueError(f"{data_source} holds no text (empty or only whitespace).")
    return books


def _raw_passages(
    data_source: str | os.PathLike,
    kind: str,
    split: str,
    words_per_passage: int | None,
    cache_dir: str | os.PathLike | None,
) -> list[str]:
    if words_per_passage is None:
        raise ValueError(f"{data_source} is raw book text: pass words_per_passage to cut it into passages.")
    books = _read_books(data_source, kind, cache_dir)
    passages = [passage for book in books for passage in split_passages(book or "", words_per_passage)]
    chosen = passages[SPLITS.index(split) :: len(SPLITS)]
    if not chosen:
        longest = max(len((book or "").split()) for book in books)
        raise ValueError(
            f"{data_source} gives {len(passages)} passage(s) of {words_per_passage} words (longest book: {longest} "
            f"words), none for the {split!r} split (passages alternate train, test). Use shorter passages."
        )
    return chosen


# ---------------------------------------------------------------- the fictional saga

def _pool(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split("|"))


_FIRST = {
    "female": _pool(
        "Elowen|Isolde|Maelis|Petra|Linnet|Briony|Mirela|Thessaly|Senna|Rosamund|"
        "Marit|Vesna|Philippa|Saffi|Una|Zelie|Agnes|Cressida|Edda|Wenna"
    ),
    "male": _pool(
        "Caspian|Bram|Fenn|Corin|Ansel|Oren|Wystan|Cael|Jory|Idris|"
        "Audric|Lorcan|Teodor|Osric|Rune|Tobin|Yannick|Barnaby|Dunstan|Emrys"
    ),
}
_LAST = _pool(
    "Ashgrove|Thistlewood|Marrowby|Quillfeather|Brackenridge|Fennimore|Holloway|Stormcrag|Wickersham|Larkspire|"
    "Coldharbour|Mistlecombe|Underbough|Pennywhistle|Greymantle|Oakhollow|Tarrow|Vellacott|Dimmock|Harrowell|"
    "Kettleby|Lanyard|Nettlebed|Orpington|Pickering|Sallow|Teversham|Wrenfield|Blackacre|Copperthwaite"
)
_PRONOUNS = {"female": ("she", "her", "her"), "male": ("he", "him", "his")}
_SCHOOL = (_pool("Thorn|Ember|Mist|Silver|Hollow|Stone|Wren|Salt|Amber|Cinder"),
           _pool("hallow|wick|mere|gate|holm|crest|fell|combe"),
           _pool("Academy|College of Spellcraft|School of the Arcane Arts|Conservatory of Charms"))  # fmt: skip
_HOUSE_NAMES = _pool(
    "Ashvale|Brightwater|Cindermoor|Duskhollow|Fernhaven|Glimmerstone|Ironbrook|Larkhaven|Mistcombe|Stonewell"
)
_EMBLEMS = _pool(
    "a grey heron|a copper fox|a black stag|a white hare|a silver salmon|a red kite|a green adder|a brown bear"
)
_COLOURS = _pool("slate blue|rust red|moss green|pale gold|deep violet|charcoal grey|sea green|burnt orange")
_VIRTUES = _pool("patience|daring|honesty|curiosity|loyalty|kindness|resolve|wit")
_HOUSE_POOLS = (_HOUSE_NAMES, _COLOURS, _EMBLEMS, _VIRTUES)
_TRAITS = _pool("stubborn|quick-witted|soft-spoken|reckless|careful|cheerful|proud|shy|fierce|dreamy")
_HABITS = _pool(
    "chewing the end of a quill|tapping two fingers on the table|humming the same old tune|twisting a loose thread "
    "round one finger|rocking on the back legs of a chair|drawing tiny maps in the margins|cracking each knuckle "
    "in turn"
)
_VILLAGES = _pool(
    "Little Marsden|Cobble End|Upper Wyck|Hensbury|Fallowmere|Kettle Cross|Dunmarrow|Saltby|Brindle Green|Oxley Ford"
)
_PLACES = _pool(
    "the Lantern Tower|the Glass Orchard|the Sunken Library|the Whispering Fen|the Ninefold Stair|the Drowned Chapel|"
    "the Bramble Maze|the Old Observatory|the Copper Bridge|the Hollow Market|the Moonwell|the Long Gallery"
)
_SUBJECTS = _pool(
    "Charmwork|Tidecraft|Beast Lore|Starreading|Wardcraft|Herb Lore|Runecraft|Weatherweaving|Old Tongues|Alchemy"
)
_INCANTATIONS = _pool(
    "Lumenvale|Ferrocant|Aquilon|Quietra|Ventassa|Glacien|Revellar|Cendrix|Mirrowen|Tenebral|Suturo|Ascendis|"
    "Obstrava|Florissant"
)
_SPELLS = (  # (what the charm does, what is seen when it is cast)
    ("conjures a globe of pale light", "a globe of pale light rose from the tip of the wand"),
    ("binds loose metal together", "the broken hinge snapped back into place with a clang"),
    ("calls water up out of the ground", "a thin spring bubbled up between the flagstones"),
    ("silences everything within ten paces", "every sound in the room died at once"),
    ("summons a gust of wind", "a gust tore through the room and scattered the papers"),
    ("freezes water solid", "the puddle at their feet turned white with frost"),
    ("reveals hidden writing", "faint silver letters crawled across the blank page"),
    ("kindles a small flame", "a small blue flame sprang up in the empty grate"),
    ("makes a mirror image of the caster", "a second, shimmering copy stepped out to the left"),
    ("darkens a room", "the torches shrank to nothing and darkness poured in"),
    ("mends torn cloth", "the ragged tear in the sleeve stitched itself shut"),
)
_CREATURES = (  # (name, what it is)
    ("mirewisp", "a small glowing marsh spirit that feeds on lantern light"),
    ("thornback", "a badger-sized beast with a ridge of spines along its back"),
    ("glasswing", "a moth as large as a hand whose wings ring like tiny bells"),
    ("hollowhound", "a gaunt grey dog that can walk through fog as if it were a door"),
    ("brinewyrm", "a long eel-like serpent that sleeps in salt pools"),
    ("cinderfox", "a fox with embers in its fur that never burn what it loves"),
    ("lanternling", "a beetle whose shell glows green when danger is near"),
    ("stonecrow", "a crow made heavy by a hide of grey pebbles"),
    ("bramblecat", "a wild cat that hides inside thorn hedges and purrs like a kettle"),
    ("moonhare", "a white hare that is only seen on nights of a full moon"),
)
_PET_NAMES = _pool("Pip|Tansy|Smudge|Bramble|Quill|Nutmeg|Wicket|Sorrel")
_PET_ACTIONS = _pool(
    "curled up on the windowsill and refused to move|nosed its way into the bag of biscuits|followed them as far "
    "as the door and then sat down in protest|went very still, the way it did when something was wrong|chased its "
    "own shadow round the legs of the table|fell asleep in the warmest chair in the room|stole a sock and hid it "
    "under the bed|sat on the open book so that nobody could read it"
)
_ARTIFACTS = _pool(
    "the Ember Compass|the Ninth Key|the Salt Crown|the Moonlit Ledger|the Glass Heart|the Silent Bell|the Ashen Map|"
    "the Tidestone|the Winter Lantern|the Sleeping Clock|the Thorn Mirror|the Iron Psalter"
)
_EPITHETS = _pool("the Pale Warden|the Ash Regent|the Hollow Queen|the Grey Sovereign|the Lantern Thief|the Quiet King")
_GOALS = _pool(
    "to drown the old valley under the lake|to silence every bell in the land|to unmake the wards of the school|"
    "to wake the storm that sleeps under the hills|to put out every hearth fire before midwinter"
)
_TIMES = _pool(
    "late that evening|just before dawn|after supper|three days later|at midnight|in the grey hour before breakfast|"
    "when the last bell had rung|on the first frosty morning|halfway through the afternoon|long after curfew"
)
_WEATHER = _pool(
    "a cold rain was falling|fog lay thick over the lake|the wind rattled every window|snow had settled on the "
    "battlements|the sky was a clear, hard blue|thunder rolled somewhere far off|a thin drizzle hung in the air"
)
_MOODS = _pool("uneasy|hopeful|tired|furious|curious|frightened|restless|sulky|giddy|wary")
_SOUNDS = _pool(
    "a low humming|the scrape of claws on stone|a door closing very softly|laughter that stopped too suddenly|"
    "the chime of a distant bell|footsteps that did not match their own|a rustle like turning pages"
)
_MONTHS = _pool("September|October|November|December|January|February|March|April|May|June")
_TOPICS = _pool(
    "what happens to the spells nobody uses any more|going home for good|the winter the lake froze|whether the "
    "portraits ever sleep|what lies under the Moonwell|the people we were before we came here"
)
_HOME_THINGS = _pool(
    "wet grass|woodsmoke|apples stored for the winter|the river in spring|hot tar on the road|clean washing"
)
_WHEN = _pool(
    "at least once a week|whenever the subject came up|on the first day of every term|at every feast|in a whisper|"
    "when nobody else was listening"
)
_HIDING = _pool("the bench|a heap of wet cloaks|the library steps|an overturned cauldron|the hedge|a loose floorboard")
_COUNTS = _pool("three|five|seven|nine|twelve")
_MEMORIES = _pool(
    "they had both got lost on the Ninefold Stair|a boat had tipped them both into the lake|they had been given "
    "the same broken wand by mistake|neither could find the dining hall|they had shared the last seat on the coach"
)
_NEWS = _pool(
    "someone had let the owls out of the rookery|a whole shelf of the library had vanished overnight|the lake had "
    "turned the colour of milk|two first-years had been found asleep on the roof|the headmistress had cancelled the "
    "match|every clock in the school had stopped at the same minute"
)
_CHAPTER_ADJ = _pool("Silver|Broken|Hidden|Seventh|Frozen|Quiet|Burning|Borrowed|Last|Crooked|Drowned|Painted")
_CHAPTER_NOUN = _pool("Door|Letter|Bell|Stair|Garden|Bargain|Lantern|Feast|Window|Promise|Map|Storm")
_ORDINALS = _pool("One|Two|Three|Four|Five|Six|Seven|Eight|Nine|Ten|Eleven|Twelve")
# {A}/{B}: two different students (first names); {A_he}, {A_him}, {A_his}, {A_house}, ... their facts.
_SENTENCES = _pool(
    "{time}, {A} and {B} climbed the stairs to {place} without a word.|"
    "{A} had never liked {place}, not since the night {A_he} first got lost there.|"
    "{weather}, and {A} pulled {A_his} cloak tighter as {A_he} crossed {place}.|"
    "{A} found {B} in {place}, bent over a battered book on {subject}.|"
    "It was {B} who heard it first: {sound}, somewhere beyond {place}.|"
    "{A} felt {mood}, though {A_he} could not have said why.|"
    "By the time {A} reached {place}, the candles had burned down to stubs.|"
    "{A} counted the steps under {A_his} breath, as {A_he} always did when {A_he} was {mood}.|"
    "{A_full}, like everyone in {A_house}, wore a {A_colour} scarf with {A_emblem} stitched in one corner, "
    "and {time} {A_he} pulled it up against the cold of {place}.|"
    "'{A_house} prizes {A_virtue} above everything,' {B} reminded {A} {when}.|"
    "{teacher}, who taught {subject} at {school}, looked up sharply when {A} came in.|"
    "'{spell}!' said {A}, and {spell_result}.|"
    "{A} remembered that the {spell} charm {spell_effect}, and lifted {A_his} wand.|"
    "{time}, {pet}, {hero}'s {pet_kind}, {pet_action}.|"
    "A {creature} slipped out from under {hiding}; it was {creature_desc}.|"
    "{A} had read that a {creature} is {creature_desc}, but seeing one up close was another matter.|"
    "Somewhere beneath {place}, people whispered, {villain} was still searching for {artifact}.|"
    "{time}, {A} read once more how {villain_full}, whom the old books called {epithet}, had sworn {goal}.|"
    "{B} told {A}, {when}, that {head}, head of {school} for thirty years, rarely left {head_place}.|"
    "That night {A} wrote home to {A_village}, but did not mention {artifact}.|"
    "{A} knew, though nobody was supposed to, that {keeper} kept a {keeper_creature} behind the greenhouses, "
    "and {A_he} felt {mood} every time {A_he} walked past.|"
    "'We shouldn't be in {place},' whispered {B}. '{teacher_short} will have us scrubbing floors until {month}.'|"
    "'{Artifact} is real, and it is in {book_place},' said {A}. 'I saw it {time} with my own eyes.'|"
    "'Do you ever think about {topic}?' {B} asked quietly.|"
    "'Not now,' said {A}, without looking up from {A_his} notes on {subject}.|"
    "'If {villain} gets {artifact} before {month},' said {B}, '{place} will only be the beginning.'|"
    "'You're {mood}, {A},' said {B}. 'You always go quiet when you're {mood}.'|"
    "The rumour that {artifact} lay hidden in {book_place} had reached every common room by {month}.|"
    "{A} pressed {A_his} ear to the door of {book_place} and heard {sound}.|"
    "{B} laughed, but it was not a happy sound, and {A} looked away.|"
    "The {book_creature} in {book_place} had been put there to guard {artifact}, or so {B} believed.|"
    "{A} thought of {A_village}, of {home_thing}, and for a moment forgot to be {mood}.|"
    "{teacher} set them an essay on {subject}, due in the first week of {month}, that nobody finished.|"
    "At breakfast the {A_house} table was louder than usual, and {A} soon learned why: {news}.|"
    "{time}, in {place}, {B} sat {B_habit}, as {B_he} always did when thinking hard.|"
    "{A} was {A_trait}, everyone agreed, but even {A_he} hesitated at the door of {place}.|"
    "'{spell2}!' {B} answered, and {spell2_result}.|"
    "Nobody had set foot in {place} since the winter the lake froze solid.|"
    "It rained for three days, and on the fourth {A} and {B} went looking for the {book_creature} in {place}.|"
    "'{head_short} knows more about {artifact} than {head_he} says,' muttered {B}, glancing towards {place}.|"
    "Far below, in {place}, a bell began to toll, {count} times and then silence.|"
    "{A} and {B} had known each other since their first week at {school}, when {memory}."
)


def _person(rng: random.Random, taken: set[str], **facts) -> dict:
    while True:
        gender = rng.choice(("female", "male"))
        first, last = rng.choice(_FIRST[gender]), rng.choice(_LAST)
        if first not in taken and last not in taken:
            taken.update((first, last))
            he, him, his = _PRONOUNS[gender]
            return {"first": first, "full": f"{first} {last}", "last": last, "he": he, "him": him, "his": his, **facts}


def _world(rng: random.Random, n_books: int) -> dict:
    """The saga's fixed facts: school, houses, cast, spells, creatures and one quest per book."""
    taken: set[str] = set()
    houses = [
        {"house": name, "colour": colour, "emblem": emblem, "virtue": virtue}
        for name, colour, emblem, virtue in zip(*(rng.sample(pool, 4) for pool in _HOUSE_POOLS))
    ]
    hero_house = houses[0]
    students = [  # the hero, two friends in the hero's house, a rival and two classmates
        _person(
            rng, taken, **house, trait=rng.choice(_TRAITS), habit=rng.choice(_HABITS), village=rng.choice(_VILLAGES)
        )
        for house in [hero_house, hero_house, hero_house, houses[1], houses[2], houses[3]]
    ]
    subjects = rng.sample(_SUBJECTS, 4)
    teachers = [_person(rng, taken, subject=subject) for subject in subjects]
    creatures = rng.sample(_CREATURES, 6)
    spells = [(name, *effect) for name, effect in zip(rng.sample(_INCANTATIONS, len(_SPELLS)), _SPELLS)]
    books = [
        {"artifact": artifact, "book_place": rng.choice(_PLACES), "book_creature": rng.choice(creatures)[0]}
        for artifact in rng.sample(_ARTIFACTS, n_books)
    ]
    school = "".join(rng.choice(part) for part in _SCHOOL[:2]) + " " + rng.choice(_SCHOOL[2])
    return {
        "school": school, "students": students, "teachers": teachers, "spells": spells, "creatures": creatures,
        "books": books, "head": _person(rng, taken), "head_place": rng.choice(_PLACES),
        "keeper": _person(rng, taken), "keeper_creature": rng.choice(creatures)[0],
        "villain": _person(rng, taken), "epithet": rng.choice(_EPITHETS), "goal": rng.choice(_GOALS),
        "pet": rng.choice(_PET_NAMES), "pet_kind": rng.choice(creatures)[0],
    }  # fmt: skip


def _sentence(rng: random.Random, world: dict, book: dict) -> str:
    students = world["students"]
    a, b = rng.sample(students[:3], 2) if rng.random() < 0.7 else rng.sample(students, 2)
    teacher = rng.choice(world["teachers"])
    (spell, effect, result), (spell2, _, result2) = rng.sample(world["spells"], 2)
    creature, creature_desc = rng.choice(world["creatures"])
    head, villain = world["head"], world["villain"]
    head_title = "Headmistress" if head["he"] == "she" else "Headmaster"
    slots = {
        **{f"A_{key}": value for key, value in a.items()}, **{f"B_{key}": value for key, value in b.items()},
        "A": a["first"], "B": b["first"], "hero": students[0]["first"], "school": world["school"],
        "teacher": f"Magister {teacher['full']}", "teacher_short": f"Magister {teacher['last']}",
        "subject": teacher["subject"], "spell": spell, "spell_effect": effect, "spell_result": result,
        "spell2": spell2, "spell2_result": result2, "creature": creature, "creature_desc": creature_desc,
        "pet": world["pet"], "pet_kind": world["pet_kind"], "pet_action": rng.choice(_PET_ACTIONS),
        "villain": villain["first"], "villain_full": villain["full"], "epithet": world["epithet"],
        "goal": world["goal"], "head": f"{head_title} {head['full']}", "head_short": f"{head_title} {head['last']}",
        "head_he": head["he"], "head_place": world["head_place"], "keeper": world["keeper"]["full"],
        "keeper_creature": world["keeper_creature"],
        "Artifact": book["artifact"][0].upper() + book["artifact"][1:], **book,
        "time": rng.choice(_TIMES), "weather": rng.choice(_WEATHER), "place": rng.choice(_PLACES),
        "mood": rng.choice(_MOODS), "sound": rng.choice(_SOUNDS), "month": rng.choice(_MONTHS),
        "topic": rng.choice(_TOPICS), "home_thing": rng.choice(_HOME_THINGS), "news": rng.choice(_NEWS),
        "when": rng.choice(_WHEN), "hiding": rng.choice(_HIDING), "count": rng.choice(_COUNTS),
        "memory": rng.choice(_MEMORIES),
    }  # fmt: skip
    text = rng.choice(_SENTENCES).format(**slots)
    at = 1 if text.startswith("'") else 0
    return text[:at] + text[at].upper() + text[at + 1 :]


def saga_books(n_books: int = 3, words_per_book: int = 1200, seed: int = 0) -> list[str]:
    """The texts of a fictional saga of ``n_books`` books of exactly ``words_per_book`` words each.

    Each book opens with its title and runs in chapters of paragraphs drawn from ~40 sentence shapes,
    whose slots (characters, places, spells, moods, ...) are drawn anew each time, while the world's
    facts (who is in which house, what each charm does, who teaches what, each book's quest) stay fixed.
    """
    if not 1 <= n_books <= len(_ARTIFACTS):
        raise ValueError(f"n_books must be in 1..{len(_ARTIFACTS)} (one quest each), got {n_books}.")
    if words_per_book < 1:
        raise ValueError(f"words_per_book must be at least 1, got {words_per_book}.")
    rng = random.Random(seed)
    world = _world(rng, n_books)
    hero = world["students"][0]["full"]
    texts = []
    for number, book in enumerate(world["books"]):
        blocks = [f"Book {_ORDINALS[number]}: {hero} and {book['artifact']}"]
        chapter, left, n_words = 0, 0, len(blocks[0].split())
        while n_words < words_per_book:
            if not left:  # a new chapter of 2 to 5 paragraphs
                chapter, left = chapter + 1, rng.randint(2, 5)
                blocks.append(f"Chapter {chapter}: The {rng.choice(_CHAPTER_ADJ)} {rng.choice(_CHAPTER_NOUN)}")
            else:
                left -= 1
                blocks.append(" ".join(_sentence(rng, world, book) for _ in range(rng.randint(3, 6))))
            n_words += len(blocks[-1].split())
        extra = n_words - words_per_book
        if extra:
            blocks[-1] = " ".join(blocks[-1].split()[:-extra])
        texts.append("\n\n".join(block for block in blocks if block))
    return texts


def generate_harry_potter(
    out_dir: str | os.PathLike,
    n_books: int = 3,
    passages_per_book: int = 10,
    words_per_passage: int = 120,
    prompt_lengths: Sequence[int] = (50, 100),
    seed: int = 0,
) -> Path:
    """Write a fictional saga in both Harry Potter forms under ``out_dir``; return ``out_dir``.

    ``out_dir/soul``: ``hp_{train,test}_qa_{k}.jsonl`` for each k of ``prompt_lengths``;
    ``out_dir/muse_books``: the MUSE-Books layout (raw/forget, one row per book). Loading either with
    the same ``words_per_passage`` gives the same rows. The same arguments give byte-identical files.
    """
    if passages_per_book < 1 or n_books * passages_per_book < len(SPLITS):
        raise ValueError(
            f"Need at least one passage per book and {len(SPLITS)} in all (train, test); "
            f"got {n_books} x {passages_per_book}."
        )
    too_long = [k for k in prompt_lengths if not 1 <= k < words_per_passage]
    if too_long or not prompt_lengths:
        raise ValueError(
            f"prompt_lengths must be non-empty, each in 1..{words_per_passage - 1} (shorter than words_per_passage); "
            f"got {list(prompt_lengths)}."
        )
    books = saga_books(n_books, passages_per_book * words_per_passage, seed)
    out = Path(out_dir)
    description = (
        "Fictional saga written by `sga.data.harry_potter.generate_harry_potter` (not the Harry Potter books): "
        f"n_books={n_books}, passages_per_book={passages_per_book}, words_per_passage={words_per_passage}, seed={seed}."
    )
    write_parquet_repo(out / MUSE_DIR, {"raw": {"forget": [{"text": book} for book in books]}}, description=description)
    soul = out / SOUL_DIR
    soul.mkdir(parents=True, exist_ok=True)
    for stale in soul.glob("hp_*_qa_*.jsonl"):
        stale.unlink()
    passages = [passage for book in books for passage in split_passages(book, words_per_passage)]
    for index, split in enumerate(SPLITS):
        for k in prompt_lengths:
            rows = completion_rows(passages[index :: len(SPLITS)], k)
            lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            (soul / f"hp_{split}_qa_{k}.jsonl").write_text("".join(lines), encoding="utf-8")
    return out
