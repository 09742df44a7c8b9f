"""Text measures for the report: leading verb and object, readability, word and token counts.

All are simple, deterministic heuristics (no spaCy, no NLTK downloads); the report says which one it used.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[,.;:?!]")
# An opening clause that is skipped up to its comma: "Given a list of numbers, find ..."
CLAUSE_OPENERS = {"given", "if", "for", "based", "using", "in", "from", "after", "with", "when", "suppose",
                  "assuming", "as"}
FILLERS = {"please", "kindly", "now", "then", "also", "just", "simply"}
LEAD_PHRASES = (("can", "you"), ("could", "you"), ("would", "you"), ("will", "you"), ("i", "want", "you", "to"),
                ("i", "need", "you", "to"), ("you", "need", "to"), ("you", "should"), ("your", "task", "is", "to"),
                ("help", "me"), ("try", "to"), ("i", "would", "like", "you", "to"))
QUESTION_WORDS = {"what", "how", "why", "when", "where", "who", "whom", "which", "whose", "is", "are", "was",
                  "were", "do", "does", "did", "can", "could", "should", "would", "will", "has", "have", "shall",
                  "may", "might", "am"}
NOT_VERBS = {"the", "a", "an", "this", "that", "these", "those", "i", "you", "we", "it", "my", "your", "our",
             "there", "here", "he", "she", "they", "his", "her", "their", "its", "one", "some", "all", "each",
             "every", "no", "not", "many", "most", "in", "on", "at", "of", "to", "and", "or", "but", "so",
             "given", "question", "context", "passage", "text"}  # field labels of prompt formats ("Question: ...")
# Words skipped between the verb and its object: determiners, pronouns, numbers, common modifiers.
OBJECT_SKIP = {"a", "an", "the", "me", "us", "him", "her", "them", "my", "your", "our", "his", "their", "its",
               "this", "that", "these", "those", "some", "any", "few", "several", "each", "every", "all", "one",
               "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "short", "brief", "new",
               "following", "given", "simple", "good", "detailed", "creative", "random", "possible", "different",
               "more", "most", "same", "other", "another", "single", "small", "big", "long", "best", "main",
               "appropriate", "suitable", "correct", "proper", "own", "funny", "interesting", "unique", "whole",
               "largest", "smallest", "longest", "shortest", "highest", "lowest", "biggest", "greatest", "oldest",
               "newest", "latest", "fastest", "slowest", "easiest", "hardest", "closest", "nearest", "cheapest",
               "least", "first", "last", "next", "top", "total"}
OBJECT_STOP = {"of", "to", "for", "in", "on", "about", "with", "from", "by", "at", "as", "into", "that", "if",
               "whether", "how", "what", "why", "when", "where", "who", "which", "and", "or", "is", "are", "be"}
VERB_OBJECT_METHOD = (
    "heuristic: the first word of the instruction, after skipping boilerplate that opens many instructions "
    "alike, a field label ('Instruction:'), an opening 'Given ..., ' / 'If ..., ' clause and polite lead-ins "
    "('please', 'can you'), is taken as the verb when it is not a question word, determiner "
    "or pronoun; its object is the next word that is not a determiner, pronoun, number or common modifier "
    "(plural -s folded). The Self-Instruct paper used a constituency parser; this is a dependency-free "
    "approximation.")


NOT_PLURAL = {"news", "series", "species", "physics", "mathematics", "politics", "economics", "always", "lyrics",
              "whereas", "perhaps", "various", "previous", "famous", "gas", "bus", "yes", "this", "has", "was"}


def _singular(w: str) -> str:
    if w in NOT_PLURAL:
        return w
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


# a leading segment: a [tag], or text up to a newline, a colon or the end of a sentence
_HEAD = re.compile(r"\s*(?:\[[^\]\n]{1,60}\]|[^\n]{1,300}?(?:\n|:(?=\s)|[.!?](?=\s)))\s*")


def _head(text: str) -> str | None:
    m = _HEAD.match(text)
    return m.group(0) if m and m.end() < len(text.rstrip()) else None


def leading_boilerplate(texts: Sequence[str], share: float = 0.3, min_count: int = 3) -> list[str]:
    """Leading segments (a `[tag]`, or text up to a newline, a colon or a sentence end) that open at least
    `share` of the texts, outermost first: boilerplate such as "Toolformer: " or a fixed preamble that a
    recipe or an imported data set puts before every instruction. Its first word is not the verb."""
    found: list[str] = []
    rest = list(texts)
    for _ in range(4):  # a preamble can be several segments long
        heads = Counter(h for h in map(_head, rest) if h)
        if not heads:
            break
        seg, n = heads.most_common(1)[0]
        if n < max(min_count, share * len(texts)):
            break
        found.append(seg)
        rest = [t[len(seg):] if t.startswith(seg) else t for t in rest]
    return found


def strip_boilerplate(text: str, boilerplate: Sequence[str]) -> str:
    for seg in boilerplate:
        if text.startswith(seg):
            text = text[len(seg):]
    return text


def verb_object(instruction: str, boilerplate: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """(leading verb, its object) of an imperative instruction, or (None, None) for a question or statement;
    the object is None when none is found within four words (see VERB_OBJECT_METHOD). `boilerplate`
    (from `leading_boilerplate`) is cut from the front first."""
    # the opening is all that matters; prompts can be long
    toks = _TOKEN.findall(strip_boilerplate(instruction, boilerplate)[:240].lower())
    if toks and toks[0] in CLAUSE_OPENERS and "," in toks[:40]:
        toks = toks[toks.index(",") + 1:]
    changed = True
    while changed and toks:
        changed = False
        if toks[0] in FILLERS:
            toks, changed = toks[1:], True
        elif len(toks) > 2 and toks[1] == ":" and toks[0].isalpha():  # a field label: "Instruction: Write ..."
            toks, changed = toks[2:], True
        for phrase in LEAD_PHRASES:
            if tuple(toks[:len(phrase)]) == phrase:
                toks, changed = toks[len(phrase):], True
    if not toks or not toks[0].isalpha() or toks[0] in QUESTION_WORDS or toks[0] in NOT_VERBS:
        return None, None
    verb = toks[0]
    for w in toks[1:6]:
        if not w.isalpha() or w in OBJECT_STOP:
            break
        if w not in OBJECT_SKIP:
            return verb, _singular(w)
    return verb, None


def syllables(word: str) -> int:
    """Vowel-group syllable count with a silent final -e; at least 1."""
    w = word.lower()
    n = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:
        n -= 1
    return max(1, n)


def flesch_reading_ease(text: str) -> float | None:
    """Flesch (1948) reading ease, 206.835 - 1.015 words/sentence - 84.6 syllables/word; None without words.

    Syllables by vowel groups (textstat needs NLTK's cmudict, which is a download), so values differ from
    textstat's by a few points on hard words."""
    words = re.findall(r"[A-Za-z]+", text)
    if not words:
        return None
    sentences = max(1, len(re.findall(r"[.!?]+(?:\s|$)", text.strip())))
    syl = sum(syllables(w) for w in words)
    return 206.835 - 1.015 * (len(words) / sentences) - 84.6 * (syl / len(words))


def word_count(text: str) -> int:
    return len(text.split())


class TokenCounter:
    """Counts tokens with a real tokenizer when one is cheap to load (a local `tokenizer.json`), else estimates
    one token per four characters. `name` says which, for the figure caption."""

    def __init__(self, name: str, count: Callable[[Sequence[str]], list[int]], exact: bool):
        self.name, self.count, self.exact = name, count, exact


def token_counter(model: str | None = "smollm2-135m") -> TokenCounter:
    """The student's tokenizer if its converted folder is already on disk (never converts or downloads);
    otherwise the characters/4 estimate."""
    path = _local_tokenizer_file(model) if model else None
    if path is not None:
        try:
            from tokenizers import Tokenizer
            tok = Tokenizer.from_file(str(path))

            def count(texts: Sequence[str]) -> list[int]:
                return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]

            label = Path(model).name if path.parent == Path(model).expanduser() else model  # a folder: its name
            return TokenCounter(f"the {label} tokenizer", count, exact=True)
        except Exception:  # a broken or foreign tokenizer file: fall back to the estimate, said in the caption
            pass
    return TokenCounter("an estimate of one token per 4 characters (no local tokenizer found)",
                        lambda texts: [math.ceil(len(t) / 4) for t in texts], exact=False)


def _local_tokenizer_file(model: str) -> Path | None:
    p = Path(model).expanduser()
    if (p / "tokenizer.json").is_file():
        return p / "tokenizer.json"
    from ..models import EMBEDDED, cache_dir
    if model in EMBEDDED:
        found = sorted((cache_dir() / "models").glob(f"{model}-*/tokenizer.json"))
        return found[-1] if found else None
    return None
