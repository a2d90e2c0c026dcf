"""Generate a deterministic English->German toy parallel corpus.

The corpus comes from a small, fully correct transitive-clause grammar::

    S   -> SUBJ VERB OBJ            "The dog sees you"   -> "Der Hund sieht dich"
    S   -> SUBJ do/does not VERB OBJ "She does not see the dog"
                                      -> "Sie sieht den Hund nicht"

* Subjects: the pronouns I, you, he, she, it, we, they and noun phrases
  (nominative case) built from a person or animal noun with a determiner:
  the / a(n) / my / your in the singular and the / my / your in the plural
  (no my / your with man / woman)
  ("the dog" -> "der Hund", "a cat" -> "eine Katze", "my dogs" -> "meine Hunde").
* Verbs: about 30 transitive verbs taking an accusative object, conjugated
  for ich / du / er-sie-es / wir-sie, irregular forms included
  (see -> ich sehe, du siehst, er sieht; like -> ich mag, wir mögen ...).
  English uses -s in the 3rd person singular ("she sees", "it catches").
* Objects: accusative pronouns (me -> mich, you -> dich, him -> ihn, her -> sie,
  it -> es, us -> uns, them -> sie) and accusative noun phrases from person,
  animal and thing nouns ("den Hund", "einen Apfel", "das Kind", weak nouns
  like "den Jungen", "den Studenten", "den Bären").
* Negation: main clause verb-second with "nicht" at the end
  ("Ich liebe dich nicht"), except that an indefinite object is negated with
  "kein" ("I do not see a dog" -> "Ich sehe keinen Hund").
* English "you"/"your" always maps to informal singular du / dich / dein.
* Each verb restricts its subject and object classes (person / animal / thing)
  so sentences stay sensible; reflexive-like pairs (I-me, we-us, you-you ...)
  are excluded.

All distinct sentences are enumerated, "I love you" and "I do not love you"
are held out of every split, and val / test / train are sampled without
replacement (so they are disjoint as sentence pairs).  Every positive sentence
that differs from "I love you" in exactly one slot ("I love him",
"We love you", "I see you" ...) is forced into train, so a model must compose
the held-out sentence from well attested parts.  About half the pairs end in
"." on both sides, the other half on neither.

Usage: python scripts/make_toy_data.py [--out data/toy] [--seed 1234]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

PERSON, ANIMAL, THING = "P", "A", "T"


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str  # "m", "f" or "n"
    cls: str  # PERSON, ANIMAL or THING
    de_acc: str = ""  # singular accusative if different (weak nouns)
    possessable: bool = True  # False where "my men" / "your woman" sound odd


@dataclass(frozen=True)
class Verb:
    en: str  # base form ("look for")
    en_3sg: str  # 3rd person singular ("looks for")
    de: tuple[str, str, str, str]  # ich, du, er/sie/es, wir/sie
    subj: frozenset[str]
    obj: frozenset[str]


@dataclass(frozen=True)
class NounPhrase:
    en: str
    de_nom: str
    de_acc: str
    de_acc_neg: str | None  # "kein" form; when set, no "nicht" is added
    agr: str  # "1sg", "2sg", "3sg", "1pl", "3pl"
    classes: frozenset[str]
    ref: frozenset[str]  # discourse participants referred to ("1", "2")


@dataclass(frozen=True)
class Clause:
    subj: NounPhrase
    verb: Verb
    obj: NounPhrase
    negated: bool


def _fs(s: str) -> frozenset[str]:
    return frozenset(s)


def nouns() -> list[Noun]:
    """Noun lexicon: English sg/pl, German sg/pl, gender, semantic class."""
    return [
        Noun("man", "men", "Mann", "Männer", "m", PERSON, possessable=False),
        Noun("woman", "women", "Frau", "Frauen", "f", PERSON, possessable=False),
        Noun("child", "children", "Kind", "Kinder", "n", PERSON),
        Noun("boy", "boys", "Junge", "Jungen", "m", PERSON, de_acc="Jungen"),
        Noun("girl", "girls", "Mädchen", "Mädchen", "n", PERSON),
        Noun("teacher", "teachers", "Lehrer", "Lehrer", "m", PERSON),
        Noun("friend", "friends", "Freund", "Freunde", "m", PERSON),
        Noun("student", "students", "Student", "Studenten", "m", PERSON, de_acc="Studenten"),
        Noun("dog", "dogs", "Hund", "Hunde", "m", ANIMAL),
        Noun("cat", "cats", "Katze", "Katzen", "f", ANIMAL),
        Noun("horse", "horses", "Pferd", "Pferde", "n", ANIMAL),
        Noun("bird", "birds", "Vogel", "Vögel", "m", ANIMAL),
        Noun("mouse", "mice", "Maus", "Mäuse", "f", ANIMAL),
        Noun("bear", "bears", "Bär", "Bären", "m", ANIMAL, de_acc="Bären"),
        Noun("house", "houses", "Haus", "Häuser", "n", THING),
        Noun("car", "cars", "Auto", "Autos", "n", THING),
        Noun("book", "books", "Buch", "Bücher", "n", THING),
        Noun("ball", "balls", "Ball", "Bälle", "m", THING),
        Noun("apple", "apples", "Apfel", "Äpfel", "m", THING),
        Noun("key", "keys", "Schlüssel", "Schlüssel", "m", THING),
        Noun("letter", "letters", "Brief", "Briefe", "m", THING),
        Noun("bag", "bags", "Tasche", "Taschen", "f", THING),
    ]


def verbs() -> list[Verb]:
    """Verb lexicon with German present tense (ich, du, er, wir/sie)."""
    pa, pat, p, at = _fs("PA"), _fs("PAT"), _fs("P"), _fs("AT")
    table = [
        ("love", "loves", ("liebe", "liebst", "liebt", "lieben"), pa, pat),
        ("see", "sees", ("sehe", "siehst", "sieht", "sehen"), pa, pat),
        ("hear", "hears", ("höre", "hörst", "hört", "hören"), pa, pa),
        ("know", "knows", ("kenne", "kennst", "kennt", "kennen"), pa, pat),
        ("find", "finds", ("finde", "findest", "findet", "finden"), pa, pat),
        ("visit", "visits", ("besuche", "besuchst", "besucht", "besuchen"), p, p),
        ("need", "needs", ("brauche", "brauchst", "braucht", "brauchen"), pa, pat),
        ("ask", "asks", ("frage", "fragst", "fragt", "fragen"), p, p),
        ("like", "likes", ("mag", "magst", "mag", "mögen"), pa, pat),
        ("meet", "meets", ("treffe", "triffst", "trifft", "treffen"), p, _fs("PA")),
        ("carry", "carries", ("trage", "trägst", "trägt", "tragen"), p, at),
        ("have", "has", ("habe", "hast", "hat", "haben"), pa, at),
        ("hate", "hates", ("hasse", "hasst", "hasst", "hassen"), pa, pat),
        ("watch", "watches", ("beobachte", "beobachtest", "beobachtet", "beobachten"), pa, pa),
        ("look for", "looks for", ("suche", "suchst", "sucht", "suchen"), pa, pat),
        ("greet", "greets", ("grüße", "grüßt", "grüßt", "grüßen"), p, p),
        ("wake", "wakes", ("wecke", "weckst", "weckt", "wecken"), pa, pa),
        ("miss", "misses", ("vermisse", "vermisst", "vermisst", "vermissen"), pa, pat),
        ("understand", "understands", ("verstehe", "verstehst", "versteht", "verstehen"), pa, p),
        ("wash", "washes", ("wasche", "wäschst", "wäscht", "waschen"), p, at),
        ("hold", "holds", ("halte", "hältst", "hält", "halten"), p, at),
        ("kiss", "kisses", ("küsse", "küsst", "küsst", "küssen"), p, pa),
        ("forget", "forgets", ("vergesse", "vergisst", "vergisst", "vergessen"), pa, pat),
        ("catch", "catches", ("fange", "fängst", "fängt", "fangen"), pa, at),
        ("feed", "feeds", ("füttere", "fütterst", "füttert", "füttern"), p, _fs("A")),
        ("buy", "buys", ("kaufe", "kaufst", "kauft", "kaufen"), p, at),
        ("sell", "sells", ("verkaufe", "verkaufst", "verkauft", "verkaufen"), p, at),
        ("draw", "draws", ("zeichne", "zeichnest", "zeichnet", "zeichnen"), p, pat),
        ("take", "takes", ("nehme", "nimmst", "nimmt", "nehmen"), p, at),
        ("bring", "brings", ("bringe", "bringst", "bringt", "bringen"), p, at),
    ]
    return [Verb(en, en3, de, s, o) for en, en3, de, s, o in table]


def subject_pronouns() -> list[NounPhrase]:
    none: frozenset[str] = frozenset()
    return [
        NounPhrase("I", "ich", "", None, "1sg", _fs("P"), _fs("1")),
        NounPhrase("you", "du", "", None, "2sg", _fs("P"), _fs("2")),
        NounPhrase("he", "er", "", None, "3sg", _fs("P"), none),
        NounPhrase("she", "sie", "", None, "3sg", _fs("P"), none),
        NounPhrase("it", "es", "", None, "3sg", _fs("A"), none),
        NounPhrase("we", "wir", "", None, "1pl", _fs("P"), _fs("1")),
        NounPhrase("they", "sie", "", None, "3pl", _fs("PA"), none),
    ]


def object_pronouns() -> list[NounPhrase]:
    none: frozenset[str] = frozenset()
    return [
        NounPhrase("me", "", "mich", None, "1sg", _fs("P"), _fs("1")),
        NounPhrase("you", "", "dich", None, "2sg", _fs("P"), _fs("2")),
        NounPhrase("him", "", "ihn", None, "3sg", _fs("P"), none),
        NounPhrase("her", "", "sie", None, "3sg", _fs("P"), none),
        NounPhrase("it", "", "es", None, "3sg", _fs("AT"), none),
        NounPhrase("us", "", "uns", None, "1pl", _fs("P"), _fs("1")),
        NounPhrase("them", "", "sie", None, "3pl", _fs("PAT"), none),
    ]


def definite_article(gender: str, case: str) -> str:
    """der/die/das declension; gender "pl" for plural, case "nom" or "acc"."""
    if gender == "m":
        return "der" if case == "nom" else "den"
    return {"f": "die", "n": "das", "pl": "die"}[gender]


def ein_word(stem: str, gender: str, case: str) -> str:
    """Decline ein / kein / mein / dein (same endings) in nom or acc."""
    if gender == "m":
        return stem + ("en" if case == "acc" else "")
    return stem + {"f": "e", "n": "", "pl": "e"}[gender]


def english_indefinite(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrases(noun: Noun) -> list[NounPhrase]:
    """All determiner variants of one noun (nominative and accusative)."""
    cls, none = frozenset(noun.cls), frozenset()
    acc_sg = noun.de_acc or noun.de
    g = noun.gender
    phrases = [
        NounPhrase(
            f"the {noun.en}",
            f"{definite_article(g, 'nom')} {noun.de}",
            f"{definite_article(g, 'acc')} {acc_sg}",
            None, "3sg", cls, none,
        ),
        NounPhrase(
            f"{english_indefinite(noun.en)} {noun.en}",
            f"{ein_word('ein', g, 'nom')} {noun.de}",
            f"{ein_word('ein', g, 'acc')} {acc_sg}",
            f"{ein_word('kein', g, 'acc')} {acc_sg}",
            "3sg", cls, none,
        ),
        NounPhrase(
            f"the {noun.en_pl}",
            f"die {noun.de_pl}", f"die {noun.de_pl}", None, "3pl", cls, none,
        ),
    ]
    possessives = (("my", "mein"), ("your", "dein")) if noun.possessable else ()
    for en_det, stem in possessives:
        phrases.append(NounPhrase(
            f"{en_det} {noun.en}",
            f"{ein_word(stem, g, 'nom')} {noun.de}",
            f"{ein_word(stem, g, 'acc')} {acc_sg}",
            None, "3sg", cls, none,
        ))
        phrases.append(NounPhrase(
            f"{en_det} {noun.en_pl}",
            f"{ein_word(stem, 'pl', 'nom')} {noun.de_pl}",
            f"{ein_word(stem, 'pl', 'acc')} {noun.de_pl}",
            None, "3pl", cls, none,
        ))
    return phrases


def subjects(lexicon: list[Noun]) -> list[NounPhrase]:
    nps = [np for n in lexicon if n.cls != THING for np in noun_phrases(n)]
    return subject_pronouns() + nps


def objects(lexicon: list[Noun]) -> list[NounPhrase]:
    return object_pronouns() + [np for n in lexicon for np in noun_phrases(n)]


def is_valid(subj: NounPhrase, verb: Verb, obj: NounPhrase) -> bool:
    """Semantic class restrictions and no reflexive-like readings."""
    return (
        bool(subj.classes & verb.subj)
        and bool(obj.classes & verb.obj)
        and not (subj.ref & obj.ref)
    )


def all_clauses() -> list[Clause]:
    """Every sentence of the grammar, in a fixed deterministic order."""
    lexicon = nouns()
    subj_list, obj_list = subjects(lexicon), objects(lexicon)
    return [
        Clause(s, v, o, neg)
        for s in subj_list
        for v in verbs()
        for o in obj_list
        if is_valid(s, v, o)
        for neg in (False, True)
    ]


def capitalize(text: str) -> str:
    return text[0].upper() + text[1:]


def render_en(c: Clause) -> str:
    third_sg = c.subj.agr == "3sg"
    if c.negated:
        verb = f"{'does' if third_sg else 'do'} not {c.verb.en}"
    else:
        verb = c.verb.en_3sg if third_sg else c.verb.en
    return capitalize(f"{c.subj.en} {verb} {c.obj.en}")


def render_de(c: Clause) -> str:
    index = {"1sg": 0, "2sg": 1, "3sg": 2, "1pl": 3, "3pl": 3}[c.subj.agr]
    verb = c.verb.de[index]
    if not c.negated:
        rest = c.obj.de_acc
    elif c.obj.de_acc_neg is not None:
        rest = c.obj.de_acc_neg
    else:
        rest = f"{c.obj.de_acc} nicht"
    return capitalize(f"{c.subj.de_nom} {verb} {rest}")


def is_held_out(c: Clause) -> bool:
    """ "I love you" and "I do not love you" are kept out of every split."""
    return c.subj.en == "I" and c.verb.en == "love" and c.obj.en == "you"


def is_neighbour(c: Clause) -> bool:
    """Positive sentences differing from "I love you" in exactly one slot."""
    hits = (c.subj.en == "I", c.verb.en == "love", c.obj.en == "you")
    return not c.negated and sum(hits) == 2


def split(
    clauses: list[Clause], rng: random.Random, n_train: int, n_val: int, n_test: int
) -> dict[str, list[Clause]]:
    """Disjoint val/test/train samples; train holds all forced neighbours."""
    usable = [c for c in clauses if not is_held_out(c)]
    forced = [c for c in usable if is_neighbour(c)]
    pool = [c for c in usable if not is_neighbour(c)]
    need = n_val + n_test + n_train - len(forced)
    if need > len(pool):
        raise ValueError(f"grammar too small: need {need}, have {len(pool)}")
    chosen = rng.sample(pool, need)
    train = forced + chosen[n_val + n_test:]
    rng.shuffle(train)
    return {"train": train, "val": chosen[:n_val], "test": chosen[n_val:n_val + n_test]}


def to_pairs(clauses: list[Clause], rng: random.Random) -> list[tuple[str, str]]:
    """Render pairs; about half get a final "." on both sides."""
    pairs = []
    for c in clauses:
        end = "." if rng.random() < 0.5 else ""
        pairs.append((render_en(c) + end, render_de(c) + end))
    return pairs


def write_split(out: Path, name: str, pairs: list[tuple[str, str]]) -> None:
    for lang, idx in (("en", 0), ("de", 1)):
        text = "".join(p[idx] + "\n" for p in pairs)
        (out / f"{name}.{lang}").write_text(text, encoding="utf-8", newline="\n")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/toy"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--test", type=int, default=500)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    rng = random.Random(args.seed)
    clauses = all_clauses()
    splits = split(clauses, rng, args.train, args.val, args.test)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "val", "test"):
        write_split(args.out, name, to_pairs(splits[name], rng))
    counts = " ".join(f"{k}={len(v)}" for k, v in splits.items())
    print(f"grammar={len(clauses)} sentences; wrote {counts} pairs to {args.out}")


if __name__ == "__main__":
    main()
