"""Everyday sentences with the things people type and a character must read aloud: names,
weekdays, times, dates, prices, counts, measures, places. Templates are the project's own;
Faker (MIT) fills in names, places and companies, seeded, so the same seed gives the same text.
Numbers stay in their typed form ("3:30 pm", "$4.50"): the normaliser speaks them."""

from __future__ import annotations

import random

TEMPLATES = (
    "Hello, my name is {first}. How can I help you today?",
    "Hi {first}, it's nice to meet you!",
    "Good morning, {first}. Your appointment is on {weekday} at {time}.",
    "Can I get a {drink} and a {food}, please?",
    "That will be {money}, thank you.",
    "The meeting with {full} starts at {time} on {weekday}.",
    "Today will be {weather} with a high of {temp} degrees.",
    "Tomorrow looks {weather}, around {temp}°F in {city}.",
    "Please call me back before {time}.",
    "I moved to {city} in {year}.",
    "The train to {city} leaves at {time} from platform {small}.",
    "We need {small} more chairs for the party on {month} {day}.",
    "My phone number is {phone}.",
    "{full} works as a {job} at {company}.",
    "Thanks so much, {first}! See you on {weekday}.",
    "Could you send the report by {month} {day}?",
    "The package weighs {decimal} kg and costs {money} to ship.",
    "Turn left after {small} blocks, then walk about {distance} miles.",
    "Is it okay if I bring {first} to dinner on {weekday}?",
    "Sorry, I'm running about {small} minutes late.",
    "Our store opens at {time} and closes at {time2}.",
    "The total comes to {money}, including a {percent}% tip.",
    "Happy birthday, {first}! You're {age} today.",
    "I was born on {date}.",
    "The {ordinal} floor is closed until {weekday}.",
    "Did you know that {city} has about {count} people?",
    "Please remind me to call {first} at {time}.",
    "What time is it in {city} right now?",
    "Where did you put the keys, {first}?",
    "Let's meet at {company} around {time}.",
    "The flight lands at {time} on {date}.",
    "I'll have the {food}, and my friend wants the {food2}.",
    "It's {temp} degrees outside, so bring a jacket.",
    "Only {percent}% of the tickets are left.",
    "We drove {count2} miles in {small} days.",
    "The rent is {money} a month, due on the {ordinal}.",
    "Dear {first}, thank you for your letter of {month} {day}.",
    "Excuse me, is this seat taken?",
    "I think {first} said the show starts at {time}.",
    "Room {room} is on the left, next to the elevator.",
)  # fmt: skip
DRINKS = ("flat white", "latte", "cup of tea", "hot chocolate", "small coffee", "orange juice", "lemonade", "glass of water")
FOODS = ("croissant", "bagel", "blueberry muffin", "grilled cheese", "salad", "bowl of soup", "slice of cake", "sandwich")
WEATHER = ("sunny", "cloudy", "rainy", "windy", "foggy", "clear", "stormy", "mild")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


def _time(rng: random.Random) -> str:
    hour, minute = rng.randint(1, 12), rng.choice((0, 0, 5, 10, 15, 20, 30, 45, 50))
    style = rng.random()
    if style < 0.4:
        return f"{hour}:{minute:02d} {rng.choice(('am', 'pm', 'a.m.', 'p.m.'))}"
    if style < 0.7:
        return f"{hour}{rng.choice(('am', 'pm'))}"
    return f"{hour}:{minute:02d}"


def _money(rng: random.Random) -> str:
    symbol = rng.choice("$$$£€")
    return f"{symbol}{rng.randint(1, 99)}.{rng.randint(0, 99):02d}" if rng.random() < 0.6 else f"{symbol}{rng.randint(1, 2500):,}"


def _fill(template: str, rng: random.Random, fake) -> str:  # noqa: ANN001 - a seeded faker.Faker
    month = rng.choice(MONTHS)
    values = {
        "first": fake.first_name(), "full": fake.name(), "city": fake.city(), "company": fake.company(), "job": fake.job().lower(),
        "weekday": rng.choice(WEEKDAYS), "time": _time(rng), "time2": _time(rng), "drink": rng.choice(DRINKS),
        "food": rng.choice(FOODS), "food2": rng.choice(FOODS), "money": _money(rng), "weather": rng.choice(WEATHER),
        "temp": rng.randint(-5, 99), "year": rng.randint(1950, 2025), "small": rng.randint(2, 12), "month": month,
        "day": rng.randint(1, 28), "phone": f"{rng.randint(200, 999)}-{rng.randint(1000, 9999)}", "decimal": round(rng.uniform(0.2, 30), 1),
        "distance": rng.choice(("half a", "one", "two", "1.5", "3")), "percent": rng.choice((10, 15, 18, 20, 25, 50, 75)),
        "age": rng.randint(5, 90), "date": f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(1950, 2025)}",
        "ordinal": _ordinal(rng.randint(1, 30)), "count": f"{rng.randint(10, 9000) * 1000:,}", "count2": rng.randint(40, 3000),
        "room": rng.randint(100, 950),
    }  # fmt: skip
    return template.format(**values)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def everyday_sentences(count: int, seed: int = 0) -> list[str]:
    """`count` sentences drawn from the templates, the same for the same seed."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    return [_fill(TEMPLATES[i % len(TEMPLATES)], rng, fake) for i in range(count)]
