"""Non-English training speech: the symbols espeak-ng writes for it map to sensible visemes, and the sets are sound."""

from __future__ import annotations

from collections import Counter

import pytest

from avaluma.renderer.lipsync.visemes import VISEME_INDEX, VISEMES, phoneme_to_viseme


@pytest.mark.parametrize(
    ("phoneme", "viseme"),
    [
        ("ç", "CH"),  # precomposed: NFD would turn it into c + cedilla
        ("ˈyː", "ou"),  # front rounded vowels go by their lip rounding
        ("ʏ", "ou"),
        ("ɥ", "ou"),
        ("ˈøː", "oh"),
        ("œ̃", "oh"),
        ("ˈɑ̃", "aa"),  # nasal vowels map as their oral vowel
        ("õ", "oh"),
        ("ɐ̃ʊ̃", "aa"),
        ("ʁ", "kk"),
        ("x", "kk"),
        ("ɣ", "kk"),
        ("β", "PP"),
        ("ɲ", "nn"),
        ("ʎ", "nn"),
        ("pf", "PP"),
    ],
)
def test_non_english_symbols(phoneme: str, viseme: str) -> None:
    assert phoneme_to_viseme(phoneme) == VISEME_INDEX[viseme]


def test_language_switch_markers_take_the_next_sound() -> None:
    assert phoneme_to_viseme("(en)") is None
    assert phoneme_to_viseme("ɦ") is None


def test_sentence_sets_hold_out_every_fifth_sentence_and_unseen_voices() -> None:
    from avaluma.renderer.lipsync.training import languages

    assert len(languages.LANGUAGES) >= 5 and "en" not in languages.LANGUAGES
    for code, lang in languages.LANGUAGES.items():
        assert len(lang.sentences) >= 35 and len(set(lang.sentences)) == len(lang.sentences), code
        held = [i for i in range(len(lang.sentences)) if languages.is_heldout_sentence(i)]
        assert len(held) == len(lang.sentences) // 5
        assert not set(lang.heldout_voices) & set(languages.train_voices(lang)), code
        assert languages.language_of(languages.voice_label(code, lang.heldout_voices[0])) == code
    assert languages.language_of("espeak:en-us+m1") == "en"


def test_every_language_speaks_with_plausible_visemes() -> None:
    pytest.importorskip("espeakng_loader", reason="espeakng-loader is not installed: pip install 'avaluma[train]'")
    from avaluma.renderer.lipsync.training import languages
    from avaluma.renderer.lipsync.training.synth import EspeakSynth

    espeak = EspeakSynth()
    for code, lang in languages.LANGUAGES.items():
        for voice in (*languages.train_voices(lang)[:1], *lang.heldout_voices):
            utt = espeak.synth(lang.sentences[0], voice=voice)
            duration = len(utt.audio) / utt.sample_rate
            assert utt.spans and utt.spans[-1].end == pytest.approx(duration), (code, voice)
            share = Counter[str]()
            for s in utt.spans:
                share[VISEMES[s.viseme]] += (s.end - s.start) / duration
            # Mostly speech, many mouth shapes, lips closing somewhere, and few symbols falling back to "E".
            assert share["sil"] < 0.4, (code, voice, share)
            assert len(share) >= 6, (code, voice, share)
            assert share["PP"] > 0, (code, voice, share)
            assert share["E"] < 0.35, (code, voice, share)


def test_french_and_german_rounded_vowels_reach_the_labels() -> None:
    pytest.importorskip("espeakng_loader", reason="espeakng-loader is not installed: pip install 'avaluma[train]'")
    from avaluma.renderer.lipsync.training.synth import EspeakSynth

    espeak = EspeakSynth()
    fr = [VISEMES[s.viseme] for s in espeak.synth("Tu veux du jus ?", voice="fr").spans]
    de = [VISEMES[s.viseme] for s in espeak.synth("Ich möchte Brücken.", voice="de").spans]
    assert fr.count("ou") >= 3 and "oh" in fr, fr  # tu, du, jus: y; veux: ø
    assert "CH" in de and "oh" in de and "ou" in de, de  # ich: ç; möchte: œ; Brücken: ʏ
