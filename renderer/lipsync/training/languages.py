"""Speech in languages other than English: hand-written sentences spoken by espeak-ng, with phoneme timings.

The agent detects turns in many languages, so the avatar has to lip-sync them too. espeak-ng speaks them with IPA
phoneme events (see :class:`~avaluma.renderer.lipsync.training.synth.EspeakSynth`), and
:func:`~avaluma.renderer.lipsync.visemes.phoneme_to_viseme` maps the symbols they use (front rounded vowels, nasal
vowels, uvular and velar fricatives, palatal consonants) onto the same 15 visemes as English.

Each language has about 40 sentences written for this project (everyday topics, every viseme class present, bilabials
in several positions). Held out from training, deterministically:

* sentences: every fifth one (:func:`is_heldout_sentence`), and
* voices: for each language, voice/variant pairs that training never uses (:data:`Language.heldout_voices`; the
  variants ``+f3`` / ``+m7`` are never trained on, and some bases are regional accents never trained on either).

:func:`multilingual_items` gives training utterances (clean, at 16 kHz: the caller augments them);
:func:`multilingual_heldout` gives the clean evaluation set (:func:`~avaluma.renderer.lipsync.training.data.clean_16k`
form). Voice labels are ``"<lang>:espeak:<voice>"``; :func:`language_of` reads the language back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE
from avaluma.renderer.lipsync.training.synth import EspeakSynth, Utterance
from avaluma.renderer.lipsync.visemes import PhonemeSpan

#: espeak-ng variants used in training (the same list as the English voices); ``+f3`` and ``+m7`` are never used.
TRAIN_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f4", "+klatt", "+Alex", "+john")
HELDOUT_EVERY = 5

Item = tuple[str, npt.NDArray[np.float32], list[PhonemeSpan]]


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    #: espeak-ng base voices (language/accent) combined with :data:`TRAIN_VARIANTS` in training.
    train_bases: tuple[str, ...]
    #: Full voice names (base+variant) only ever used for evaluation.
    heldout_voices: tuple[str, ...]
    sentences: tuple[str, ...]


_ES = (
    "El perro de mi vecino ladra cada mañana junto al río.",
    "¿Quieres jugar al fútbol con nosotros el próximo sábado?",
    "Mi abuela prepara una paella enorme para toda la familia.",
    "Los niños bebían zumo de naranja bajo el sol de verano.",
    "La biblioteca cierra a las ocho, pero el museo abre hasta tarde.",
    "Pablo compró pan, queso y vino blanco en el mercado.",
    "Hace mucho frío en las montañas durante el invierno.",
    "¿Dónde está la estación de tren más cercana?",
    "Gracias por venir, fue un placer conocerte.",
    "El gato gris duerme tranquilo sobre la silla vieja.",
    "Me gustaría reservar una mesa para dos personas esta noche.",
    "Las guitarras suenan muy bien en la plaza del pueblo.",
    "Bárbara escribe poemas breves en su cuaderno azul.",
    "El médico recomendó beber agua y descansar mucho.",
    "Jorge y Ximena viajaron en barco hasta las islas.",
    "Un pájaro amarillo cantaba en la ventana de la cocina.",
    "La lluvia de ayer mojó todos los papeles del jardín.",
    "Nunca he visto un cielo tan limpio como el de hoy.",
    "El chico chileno mastica chicle mientras charla.",
    "Queremos aprender a bailar flamenco en Sevilla.",
    "Por favor, apaga la luz cuando salgas de la habitación.",
    "El tráfico de la ciudad empeora los lunes por la mañana.",
    "Mi hermana menor estudia matemáticas y física.",
    "Compramos fresas, manzanas y plátanos frescos.",
    "El viejo puente de piedra cruza el río desde hace siglos.",
    "¿Puedes ayudarme a mover este mueble tan pesado?",
    "La profesora explicó la lección con mucha paciencia.",
    "Vamos a la playa si mañana hace buen tiempo.",
    "El bebé sonríe cuando ve a su madre.",
    "Ese zapato rojo me aprieta un poco el pie.",
    "Los bomberos llegaron rápidamente al edificio.",
    "Fernando toca el piano todas las tardes después de comer.",
    "Hay que cambiar las ruedas del coche antes del viaje.",
    "El jamón ibérico es famoso en todo el mundo.",
    "Hoy empieza el festival de cine en Barcelona.",
    "La jirafa tiene el cuello muy largo y las patas finas.",
    "Cuéntame qué pasó en la reunión de ayer.",
    "Este pueblo pequeño tiene una iglesia preciosa.",
    "Nos vemos el jueves a las cinco y media.",
    "El ruido de la obra no me deja pensar.",
)

_FR = (
    "Le chat gris dort sous un lit brun.",
    "Je voudrais deux œufs et un jus d'orange, s'il vous plaît.",
    "Nous partons en vacances à la montagne au mois de juillet.",
    "Le boulanger vend du pain frais chaque matin.",
    "Il pleut depuis trois jours sur toute la Bretagne.",
    "Ma sœur a acheté une jupe bleue et des chaussures vertes.",
    "Pourquoi ne viens-tu pas dîner avec nous ce soir ?",
    "Un bon vin blanc accompagne bien le poisson.",
    "Les enfants jouent au ballon dans le jardin public.",
    "Mon oncle habite une petite maison près de la mer.",
    "La tour Eiffel brille de mille feux pendant la nuit.",
    "Il faut prendre le métro jusqu'à la gare du Nord.",
    "Cette chanson me rappelle mon enfance à Lyon.",
    "Le médecin m'a conseillé de boire beaucoup d'eau.",
    "Huit hiboux dorment sur la branche du vieux chêne.",
    "Vous pouvez fermer la fenêtre, il fait froid.",
    "Le professeur explique la leçon avec patience.",
    "J'aime beaucoup les fraises et les framboises.",
    "Ils ont mangé une soupe chaude avant de sortir.",
    "Le train pour Paris part à neuf heures précises.",
    "Ce musée expose des peintures impressionnistes.",
    "Quelle belle journée pour une promenade à vélo !",
    "Le peuple attend le discours du président.",
    "Mes voisins font beaucoup de bruit le dimanche.",
    "Une brume légère couvre encore la vallée.",
    "Le cuisinier goûte la sauce avec une cuillère en bois.",
    "Nous avons vu un film drôle au cinéma hier soir.",
    "Les feuilles jaunes tombent doucement en automne.",
    "Pierre a oublié son parapluie dans le bus.",
    "Le fromage de chèvre se marie bien avec le miel.",
    "Tu dois répondre à ce message avant midi.",
    "Le bébé pleure parce qu'il a faim.",
    "Il y a un nuage gris au-dessus du village.",
    "Je cherche une chambre calme avec vue sur le lac.",
    "Le chien aboie dès qu'il entend le facteur.",
    "Elle lit un roman policier sous le grand arbre.",
    "On se retrouve devant la mairie à quinze heures.",
    "Les oiseaux chantent au lever du soleil.",
    "Ce gâteau au chocolat est vraiment délicieux.",
    "Mon père répare la voiture dans le garage.",
)

_DE = (
    "Ich möchte früh über die Brücke fahren.",
    "Der Bach fließt ruhig durch den grünen Wald.",
    "Mein Bruder kauft Brot, Butter und frische Milch.",
    "Können Sie mir bitte den Weg zum Bahnhof zeigen?",
    "Die Kinder spielen im Garten mit dem Ball.",
    "Im Winter schneit es oft in den Bergen.",
    "Wir haben gestern einen schönen Film gesehen.",
    "Pfeffer und Salz stehen neben dem Teller.",
    "Die Katze schläft zufrieden auf dem Sofa.",
    "Der Zug nach München fährt um acht Uhr ab.",
    "Meine Großmutter backt jeden Sonntag Kuchen.",
    "Das Wetter ist heute wirklich wunderbar.",
    "Fünf Vögel sitzen auf dem Dach des Hauses.",
    "Ich brauche einen neuen Schlüssel für die Tür.",
    "Der Lehrer erklärt die Aufgabe sehr geduldig.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Deich.",
    "Bitte mach das Fenster zu, es zieht.",
    "Die Bäume verlieren im Herbst ihre Blätter.",
    "Unser Nachbar repariert sein altes Fahrrad.",
    "Möchtest du Tee oder lieber Kaffee trinken?",
    "Das Museum ist montags leider geschlossen.",
    "Sie hat ein blaues Kleid und weiße Schuhe gekauft.",
    "Der Hund bellt, sobald jemand klingelt.",
    "Auf dem Markt gibt es Äpfel, Birnen und Pflaumen.",
    "Wir treffen uns um halb sechs vor dem Kino.",
    "Die Sonne scheint, aber der Wind ist kalt.",
    "Mein Vater liest jeden Morgen die Zeitung.",
    "Ich habe meinen Regenschirm im Bus vergessen.",
    "Das Baby lacht, wenn es die Musik hört.",
    "Die Brücke über den Fluss ist sehr alt.",
    "Euer Zimmer liegt im dritten Stock.",
    "Der Koch würzt die Suppe mit frischen Kräutern.",
    "Nächste Woche fliegen wir nach Spanien.",
    "Bücher über Geschichte lese ich besonders gern.",
    "Sprechen Sie bitte etwas langsamer.",
    "Der Arzt hat mir Ruhe und viel Wasser empfohlen.",
    "Im Frühling blühen überall bunte Blumen.",
    "Am Abend gehen wir am See spazieren.",
    "Die Feuerwehr kam sehr schnell zum Unfall.",
    "Warum ist die Milch schon wieder sauer?",
)

_IT = (
    "Gli gnocchi della nonna sono buonissimi.",
    "Il cielo è azzurro e la pizza è pronta.",
    "Domani mattina andiamo al mercato a comprare la frutta.",
    "Mio fratello suona la chitarra ogni sera.",
    "La biblioteca chiude alle sette di pomeriggio.",
    "Vorrei un caffè e una brioche, per favore.",
    "I bambini giocano a pallone nella piazza.",
    "Il treno per Firenze parte dal binario tre.",
    "Quest'estate faremo una vacanza in montagna.",
    "Il gatto bianco dorme sulla poltrona.",
    "Scusi, dov'è la fermata dell'autobus?",
    "Mia madre prepara le lasagne la domenica.",
    "Il vento soffia forte sulla spiaggia.",
    "Abbiamo visto un film molto divertente.",
    "Le ragazze cantano una canzone famosa.",
    "Il medico mi ha consigliato di bere molta acqua.",
    "Paolo e Beatrice si sposano a maggio.",
    "Questo vino rosso è perfetto con la carne.",
    "Ho perso le chiavi della macchina.",
    "Il professore spiega la lezione con calma.",
    "Sul tavolo ci sono pane, burro e marmellata.",
    "Le foglie cadono lentamente in autunno.",
    "Vieni a cena da noi venerdì sera?",
    "Il ponte vecchio attraversa il fiume.",
    "La zia di Giulia abita a Bologna.",
    "Il cane abbaia quando sente il postino.",
    "Ogni giorno faccio una passeggiata nel parco.",
    "Il bambino piange perché ha fame.",
    "Lo sciopero dei treni è stato rimandato.",
    "Mangiamo gli spaghetti con il pomodoro fresco.",
    "Luca guida la moto con prudenza.",
    "Il museo espone quadri del Rinascimento.",
    "D'inverno nevica spesso sulle Alpi.",
    "Puoi chiudere la finestra, per piacere?",
    "Ci vediamo giovedì alle quattro e mezza.",
    "La barca bianca scivola sull'acqua calma.",
    "Il pizzaiolo mette la mozzarella sulla pasta.",
    "Gli uccelli cantano all'alba.",
    "Mio zio ripara le biciclette in garage.",
    "Che bella giornata per una gita al lago!",
)

_PT = (
    "O pão com manteiga é muito bom.",
    "As crianças jogam futebol na praia ao sol.",
    "Minha avó faz um bolo de chocolate delicioso.",
    "Amanhã vamos visitar o museu da cidade.",
    "O navio parte do porto às nove horas.",
    "Você quer beber água ou café?",
    "O gato preto dorme em cima do sofá.",
    "Os pássaros cantam de manhã cedo.",
    "Preciso comprar pão, leite e fruta.",
    "A biblioteca fecha às seis da tarde.",
    "O meu irmão toca guitarra muito bem.",
    "Chove muito no inverno em Lisboa.",
    "Obrigado pela ajuda, foi muito simpático.",
    "A professora explica a lição com paciência.",
    "Vamos à praia se fizer bom tempo.",
    "O médico recomendou descanso e muita água.",
    "Filipe viajou de barco até à ilha.",
    "Este vinho tinto combina com a carne.",
    "Perdi as chaves do carro outra vez.",
    "As flores do jardim são lindas na primavera.",
    "O cão ladra quando ouve o carteiro.",
    "Eles moram numa casa pequena perto do rio.",
    "Onde fica a estação mais próxima?",
    "A menina bebe um copo de leite morno.",
    "O peixe grelhado estava muito saboroso.",
    "Hoje à noite vamos ao cinema com os amigos.",
    "O vento forte derrubou a velha árvore.",
    "Gosto muito de ouvir música brasileira.",
    "O bebê sorri quando vê a mãe.",
    "Fechem a janela, por favor, está frio.",
    "O João e a Maria casaram em junho.",
    "A sopa de legumes está quente demais.",
    "Os bombeiros chegaram muito depressa.",
    "Há muitas lojas novas no centro da cidade.",
    "Ele lê o jornal todas as manhãs.",
    "A galinha pôs três ovos no ninho.",
    "Queremos aprender a dançar samba.",
    "O avião aterrou em São Paulo ao meio-dia.",
    "Este sapato vermelho está apertado.",
    "Nunca vi um céu tão azul como hoje.",
)

LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("es", "Spanish", ("es", "es-419"), ("es+f3", "es-419+m7"), _ES),
        Language("fr", "French", ("fr", "fr-ch"), ("fr-be+f3", "fr+m7"), _FR),
        Language("de", "German", ("de",), ("de+f3", "de+m7"), _DE),
        Language("it", "Italian", ("it",), ("it+f3", "it+m7"), _IT),
        Language("pt", "Portuguese", ("pt", "pt-br"), ("pt-br+f3", "pt+m7"), _PT),
    )
}


def is_heldout_sentence(index: int) -> bool:
    """Every fifth sentence of each language (indices 4, 9, ...) is kept for evaluation."""
    return index % HELDOUT_EVERY == HELDOUT_EVERY - 1


def train_voices(lang: Language) -> list[str]:
    return [base + variant for base in lang.train_bases for variant in TRAIN_VARIANTS]


def voice_label(lang: str, voice: str) -> str:
    return f"{lang}:espeak:{voice}"


def language_of(label: str) -> str:
    """The language code of a voice label from this module (``"fr:espeak:fr+m1"`` -> ``"fr"``), else ``"en"``."""
    head, sep, _ = label.partition(":espeak:")
    return head if sep and head in LANGUAGES else "en"


def to_16k(utt: Utterance) -> npt.NDArray[np.float32]:
    if utt.sample_rate == LIPSYNC_SAMPLE_RATE:
        return utt.audio
    return np.asarray(soxr.resample(utt.audio, utt.sample_rate, LIPSYNC_SAMPLE_RATE), dtype=np.float32)


def multilingual_utterances(
    rng: np.random.Generator,
    espeak: EspeakSynth,
    per_sentence: int = 2,
    languages: tuple[str, ...] | None = None,
) -> list[tuple[str, Utterance]]:
    """Training utterances at espeak-ng's own rate: ``per_sentence`` renditions of every training sentence of every
    language, each with a random training voice, rate, pitch and pitch range."""
    out: list[tuple[str, Utterance]] = []
    for code in languages or tuple(LANGUAGES):
        lang = LANGUAGES[code]
        voices = train_voices(lang)
        for i, text in enumerate(lang.sentences):
            if is_heldout_sentence(i):
                continue
            for _ in range(per_sentence):
                voice = str(rng.choice(voices))
                utt = espeak.synth_varied(text, voice, rng, max_rate=240)
                out.append((voice_label(code, voice), utt))
    return out


def multilingual_items(
    rng: np.random.Generator,
    espeak: EspeakSynth,
    per_sentence: int = 2,
    languages: tuple[str, ...] | None = None,
) -> list[Item]:
    """:func:`multilingual_utterances` as ``(voice_label, audio at 16 kHz, spans)``, clean (augment them yourself:
    ``data.augment(audio, LIPSYNC_SAMPLE_RATE, spans, rng)``)."""
    return [
        (label, to_16k(utt), utt.spans) for label, utt in multilingual_utterances(rng, espeak, per_sentence, languages)
    ]


def multilingual_heldout(espeak: EspeakSynth, languages: tuple[str, ...] | None = None) -> list[Item]:
    """The evaluation set: held-out sentences spoken by held-out voices, in ``data.clean_16k`` form. Deterministic."""
    from avaluma.renderer.lipsync.training.data import clean_16k

    rng = np.random.default_rng(1234)
    out: list[Item] = []
    for code in languages or tuple(LANGUAGES):
        lang = LANGUAGES[code]
        for i, text in enumerate(lang.sentences):
            if not is_heldout_sentence(i):
                continue
            for voice in lang.heldout_voices:
                utt = espeak.synth(text, voice=voice, rate=int(rng.integers(140, 210)))
                out.append((voice_label(code, voice), *clean_16k(utt.audio, utt.sample_rate, utt.spans)))
    return out
