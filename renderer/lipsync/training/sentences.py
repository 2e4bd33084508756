"""A phonetically rich English sentence set, written for this project (no third-party corpus).

Two parts: hand-written sentences that pack bilabials, rounded vowels, sibilants and dental fricatives into short
lines, and a seeded generator that combines word lists chosen to cover every viseme class in many contexts. A
sentence's split (train or held-out) depends only on its index, so adding voices never leaks sentences.
"""

from __future__ import annotations

import random

HANDWRITTEN: tuple[str, ...] = (
    "Peter bought a map of Boston, then went home.",
    "My mother baked blueberry muffins before breakfast.",
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "Which witch wished for a wand of woven willow?",
    "Thirty thick thistles threatened the thatched roof.",
    "Bob paid for the big blue balloon with a bill.",
    "Please move the boxes by Monday morning.",
    "Few voters voiced their views over the vote.",
    "Good food could cool you down in June.",
    "Judge the measure of the chosen treasure.",
    "Really red roses rarely rot in rain.",
    "Many more men may come to the meeting.",
    "Could you bring me a cup of hot coffee, please?",
    "Both brothers bathed in the warm mountain pool.",
    "Pop music played from a tiny speaker.",
    "Zoe's zebra zigzagged across the zoo.",
    "Each child chose a cheap chocolate bar.",
    "Yellow yoyos yield to younger users.",
    "Who would know how old the oak tree is?",
    "Amazing apples and bananas are on the table.",
    "Keep calm and carry on with your work.",
    "Measure twice, cut once, and mind the gap.",
    "Embrace the moment, breathe, and be brave.",
    "The lamb ambled by the marble bridge.",
    "Umbrellas bloom above the bus stop in the rain.",
    "Ruth threw three bright feathers through the window.",
    "Fish and chips taste best by the beach.",
    "Open the oven and pull out the bread.",
    "Visit the museum when the weather improves.",
    "Would you move your boot from my map?",
    "A loud owl hooted outside our house.",
    "The boy enjoyed the noisy toy boat.",
    "Jump up and bump the bubble maker.",
    "Pam bumped the lamp and it dimmed.",
    "We will meet beneath the maple tree at nine.",
    "The zoo keeper fed the hungry hippo.",
    "Leave the key under the mat by the door.",
    "Nobody knew the new number but Norman.",
    "Gather the garden tools and go to the gate.",
    "It is quite possible that prices will drop.",
    "Phone me before five if the plan changes.",
    "Bring a map, a compass and a bottle of water.",
    "Imagine a bright purple moon above the bay.",
    "The vivid violet vase was very valuable.",
    "Those three brothers think that math is fun.",
    "My birthday party begins at seven tomorrow.",
    "Sheep graze peacefully on the steep hillside.",
    "Our team won the championship by a point.",
    "Put the milk back in the fridge, Mabel.",
    "Every morning Emma walks her puppy in the park.",
    "Pablo plays the oboe in a small band.",
    "Hmm, maybe we should simply wait and see.",
    "Boom, the drum beat bounced off the walls.",
    "Mumble less and speak up, my friend.",
    "Beautiful music fills the empty room.",
    "Why not build a bigger boat by May?",
    "Oh, you know, the usual: work, home, sleep.",
    "Watch out for the wet paint on the bench.",
    "Bubbles burst above the baby's bath.",
    "I'd like a glass of apple juice, please.",
    "The doctor measured my blood pressure.",
    "Maybe Mary misplaced her purple pen.",
    "Smooth pebbles lie at the bottom of the brook.",
    "Whose shoes are these, and why are they blue?",
    "Thank you for helping me move on Thursday.",
    "Be back by midnight, or the bridge will be closed.",
    "People often mispronounce the word probably.",
    "The plumber fixed the pipe in a minute.",
    "A rhythm of rain tapped on the roof.",
    "Autumn leaves float slowly to the ground.",
    "Patience is a virtue, but timing is everything.",
    "Mike's bike is parked by the bakery.",
    "Twelve wolves howled at the full moon.",
    "Sam's cousin visits us every summer.",
    "The television was on, but nobody watched.",
    "Bobby bought a bunch of bananas and mangoes.",
    "Please pass the pepper and the butter.",
    "Your appointment is booked for half past two.",
    "Welcome back, we missed you very much.",
)

# Word lists for the generator: each list mixes visemes, and bilabials are deliberately frequent because closures
# are short and easy to miss.
_SUBJECTS = (
    "the baker",
    "my brother",
    "a pilot",
    "the mayor",
    "our neighbour",
    "the fisherman",
    "a young boy",
    "the old woman",
    "your teacher",
    "the judge",
    "a musician",
    "the plumber",
    "her father",
    "the zoo keeper",
    "a thief",
    "the queen",
    "my mother",
    "the shepherd",
    "a robot",
    "the chef",
)
_VERBS = (
    "bought",
    "moved",
    "found",
    "washed",
    "painted",
    "measured",
    "pushed",
    "chose",
    "threw",
    "played",
    "opened",
    "mopped",
    "fixed",
    "built",
    "watched",
    "grabbed",
    "shook",
    "brought",
    "emptied",
    "bumped",
)
_OBJECTS = (
    "a bamboo basket",
    "the purple umbrella",
    "six yellow boxes",
    "the heavy wooden chair",
    "a map of Europe",
    "the jam jar",
    "three small pumpkins",
    "the broken phone",
    "a bowl of soup",
    "the blue bicycle",
    "a pile of maple leaves",
    "the thick rope",
    "a vase of violets",
    "the shiny coins",
    "the huge balloon",
    "a bottle of milk",
    "the garage door",
    "two pairs of shoes",
    "the rubber boots",
    "an old photograph",
)
_PLACES = (
    "by the bridge",
    "in the morning",
    "before the movie",
    "behind the barn",
    "at the museum",
    "during the thunderstorm",
    "after lunch",
    "under the bed",
    "near the pub",
    "on Thursday",
    "beside the pool",
    "at midnight",
    "in the bathroom",
    "above the bay",
    "through the window",
    "with much pleasure",
    "without a word",
    "by the harbour",
    "in Bombay",
    "at the zoo",
)
_CONNECTORS = ("and then", "but", "because", "so", "while", "even though", "before", "when")
_SHORT = (
    "Yes, please.",
    "No, thank you.",
    "Maybe.",
    "Absolutely!",
    "Hello there.",
    "Oh my!",
    "Good morning.",
    "See you soon.",
    "Really?",
    "Bye bye.",
    "Well, perhaps.",
    "Hmm.",
    "Wow, that's amazing!",
    "Of course.",
)


def generated(n: int, seed: int = 1234) -> list[str]:
    """``n`` grammatical, varied sentences from the word lists, deterministic for a seed."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set(HANDWRITTEN)
    while len(out) < n:
        kind = rng.random()
        if kind < 0.1:
            short = rng.choice(_SHORT)
            if short not in seen:
                seen.add(short)
                out.append(short)
            continue
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_PLACES)}"
        if kind < 0.55:
            s += f", {rng.choice(_CONNECTORS)} {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        s = s[0].upper() + s[1:] + rng.choice((".", ".", "!", "?"))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def all_sentences(n_generated: int = 400) -> list[str]:
    """Hand-written sentences first, then generated ones (stable order: the index decides the split)."""
    return list(HANDWRITTEN) + generated(n_generated)


def is_heldout_sentence(index: int) -> bool:
    """Every seventh sentence is kept out of training and used for evaluation only."""
    return index % 7 == 3
