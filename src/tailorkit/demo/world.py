"""Where the demo shop's visitors come from: countries, names, browsers and traffic sources.

Every string here is plain ASCII without quotes or backslashes, so the encoder
can paste them into JSON without escaping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Country:
    """A visitor country with its locale, share of traffic and UTC offset."""

    code: str
    locale: str
    weight: float
    utc_offset_hours: int
    phone_prefix: str
    first_octets: tuple[int, ...]  # plausible first IPv4 octets for that country


COUNTRIES: tuple[Country, ...] = (
    Country("DE", "de-DE", 0.35, 1, "+49 15", (46, 77, 79, 84, 87, 91, 93)),
    Country("AT", "de-AT", 0.08, 1, "+43 66", (62, 77, 80, 83, 91)),
    Country("CH", "de-CH", 0.07, 1, "+41 7", (31, 46, 62, 85, 178)),
    Country("FR", "fr-FR", 0.10, 1, "+33 6", (2, 37, 78, 82, 90, 92)),
    Country("NL", "nl-NL", 0.08, 1, "+31 6", (31, 62, 77, 83, 145)),
    Country("GB", "en-GB", 0.10, 0, "+44 7", (2, 25, 51, 81, 86, 109)),
    Country("US", "en-US", 0.08, -5, "+1 555", (3, 23, 24, 50, 64, 98, 104)),
    Country("ES", "es-ES", 0.07, 1, "+34 6", (2, 37, 80, 83, 88, 95)),
    Country("IT", "it-IT", 0.07, 1, "+39 3", (2, 5, 37, 79, 87, 93)),
)
COUNTRY_WEIGHTS = np.array([c.weight for c in COUNTRIES]) / sum(c.weight for c in COUNTRIES)
UTC_OFFSET_HOURS = np.array([c.utc_offset_hours for c in COUNTRIES], dtype=np.int64)

FIRST_NAMES = (
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hugo",
    "Ida",
    "Jonas",
    "Klara",
    "Lukas",
    "Mia",
    "Noah",
    "Olivia",
    "Paul",
    "Quentin",
    "Rosa",
    "Sofia",
    "Tom",
    "Ursula",
    "Victor",
    "Wanda",
    "Xavier",
    "Yara",
    "Zoe",
    "Lea",
    "Marco",
    "Nina",
    "Omar",
)
LAST_NAMES = (
    "Schmidt",
    "Mueller",
    "Weber",
    "Fischer",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Martin",
    "Bernard",
    "Dubois",
    "Jansen",
    "de Vries",
    "Smith",
    "Jones",
    "Brown",
    "Garcia",
    "Lopez",
    "Rossi",
    "Russo",
    "Novak",
    "Berg",
    "Keller",
    "Huber",
    "Moser",
    "Baker",
    "Taylor",
    "Wilson",
    "Moreau",
    "Ricci",
)

# Index i of each tuple is the user agent of DEVICES[i]; "bot" lists known crawlers.
USER_AGENTS: dict[str, tuple[str, ...]] = {
    "mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/123.0.0.0 Mobile Safari/537.36",
    ),
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    ),
    "tablet": (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
    "bot": (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    ),
}

# utm block per SOURCES entry, and the external page a visitor from there arrives from.
UTM_JSON = (
    '{"source":"google","medium":"cpc","campaign":"brand_search"}',
    '{"source":"newsletter","medium":"email","campaign":"weekly_digest"}',
    '{"source":"facebook","medium":"paid_social","campaign":"retargeting"}',
    '{"source":"direct","medium":null,"campaign":null}',
)
SOURCE_REFERRERS = (
    '"https://www.google.com/"',
    '"https://mail.example.com/"',
    '"https://www.facebook.com/"',
    "null",
)

# Consent codes: 0 everything, 1 analytics only, 2 nothing.
CONSENT_JSON = (
    '{"analytics":true,"personalization":true}',
    '{"analytics":true,"personalization":false}',
    '{"analytics":false,"personalization":false}',
)
NO_PERSONALIZATION_SHARE = 0.04
NO_ANALYTICS_SHARE = 0.01
