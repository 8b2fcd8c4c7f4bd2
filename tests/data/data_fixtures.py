"""Fixture corpora shared by the data tests (the Ding sample and what it must parse into)."""

DING_TEXT = """\
# Version :: test fixture
# License :: GPL
Aal {m} [cook.] | Aale {pl} :: eel | eels
Haus {n}; Gebäude {n} | Häuser {pl} :: house; building | houses
Er ist krank.; Er ist erkrankt. :: He is ill.; He is sick.
Straße {f} <Strasse> | Die Straße ist gesperrt. | Wir wohnen in einer ruhigen Straße (am Stadtrand). \
:: street | The street is closed. | We live on a quiet street (on the outskirts).
Benimm dich! [ugs.] :: Behave yourself!
Schrecklich! :: Terrible!
etw. sagen {vt} | Das sagt man nicht. :: to say sth. | One does not say that.
Unmengen von etw. :: a shedload of sth.
kaputt {adj} | a | b :: broken | a
this line has no separator
"""
NOT_UTF8_LINE = "Grüße {pl} :: greetings\n".encode("latin-1")

DING_SENTENCES = [
    ("Er ist krank.", "He is ill."),
    ("Er ist krank.", "He is sick."),
    ("Er ist erkrankt.", "He is ill."),
    ("Er ist erkrankt.", "He is sick."),
    ("Die Straße ist gesperrt.", "The street is closed."),
    ("Wir wohnen in einer ruhigen Straße.", "We live on a quiet street."),
    ("Benimm dich!", "Behave yourself!"),
    ("Das sagt man nicht.", "One does not say that."),
]
DING_PHRASES = [
    ("Aal", "eel"),
    ("Aale", "eels"),
    ("Haus", "house"),
    ("Häuser", "houses"),
    ("Straße", "street"),
    ("Schrecklich!", "Terrible!"),
    ("etw. sagen", "to say sth."),
    ("Unmengen von etw.", "a shedload of sth."),
]
DING_READ_DROPS = {"field_count_mismatch": 1, "malformed_line": 1, "not_utf8": 1}
