"""Word lists of the synthetic world's text fields (titles, names, review texts, styles).

Small, fixed lists: the point is realistic *shapes* (apostrophes, quotes, non-ASCII characters)
that the ingest must cope with, not realistic text. Changing any list changes the bytes written
for a given seed (tests/data/synthetic_hashes.json pins them).
"""

from __future__ import annotations

VOCAB: dict[str, dict[str, list[str]]] = {
    "Electronics": {
        "departments": [
            "Computers & Accessories", "Camera & Photo", "Car Electronics", "Home Audio", "Portable Audio & Video",
            "TV & Video", "Cell Phones", "Office Electronics", "GPS & Navigation", "Video Games", "Networking",
            "Wearable Technology", "Security & Surveillance", "Musical Gear", "Power & Batteries", "Smart Home",
        ],
        "modifiers": [
            "USB", "Wireless", "Bluetooth", "HDMI", "Portable", "Outdoor", "Kids'", "Women's", "Men's", "Gaming",
            "Studio", "Travel", "Rugged", "Compact", "Digital", "Analog", "Smart", "Solar", "Marine", "Automotive",
            "Desktop", "Laptop", "Tablet", "Camera", "Drone", "Audio", "Video", "Network", "Optical", "Magnetic",
            "Rechargeable", "Waterproof", "Ergonomic", "Mini", "Pro", "Premium", "Budget", "Retro", "LED", "Thermal",
            "Infrared", "Modular",
        ],
        "nouns": [
            "Cables", "Adapters", "Chargers", "Headphones", "Speakers", "Microphones", "Keyboards", "Mice", "Monitors",
            "Cases", "Sleeves", "Mounts", "Stands", "Batteries", "Power Banks", "Hubs", "Routers", "Antennas",
            "Lenses", "Filters", "Tripods", "Flashes", "Memory Cards", "Hard Drives", "Docks", "Remotes", "Projectors",
            "Amplifiers", "Receivers", "Turntables", "Radios", "Scanners", "Printers", "Webcams", "Controllers",
            "Screen Protectors", "Styluses", "Cooling Pads", "Switches", "Sensors",
        ],
        "brands": [
            "Sony", "Anker", "Belkin", "Logitech", "Samsung", "Panasonic", "Kingston", "SanDisk", "Canon", "Nikon",
            "AmazonBasics", "Sennheiser", "JBL", "Philips", "Garmin", "Netgear", "TP-Link", "Cooler Master",
            "Targus", "Monster", "Pioneer", "Kenwood", "Olympus", "Fujifilm",
        ],
        "odd_brands": [
            "Müller Audio", "Café Électronique", "Señor Sound", "Zürich Labs", "Björk & Sons", "Técnica",
        ],
        "units": ["Pack", "ft", "in", "mm", "W", "GB"],
    },
    "Books": {
        "departments": [
            "Literature & Fiction", "Mystery, Thriller & Suspense", "Science Fiction & Fantasy", "Romance",
            "History", "Biographies & Memoirs", "Business & Money", "Children's Books", "Teen & Young Adult",
            "Cookbooks, Food & Wine", "Religion & Spirituality", "Science & Math", "Self-Help",
            "Politics & Social Sciences", "Arts & Photography", "Health, Fitness & Dieting",
        ],
        "modifiers": [
            "Historical", "Contemporary", "Classic", "Children's", "Women's", "Men's", "Young Adult", "Literary",
            "Epic", "Urban", "Military", "Medieval", "Victorian", "Regency", "Paranormal", "Cozy", "Hard-Boiled",
            "Dystopian", "Christian", "Jewish", "Buddhist", "Scandinavian", "Southern", "Western", "Eastern",
            "African", "Asian", "European", "American", "British", "Irish", "French", "Russian", "Japanese",
            "Ancient", "Modern", "Gothic", "Comic", "Political", "Psychological", "Legal", "Medical",
        ],
        "nouns": [
            "Fiction", "Mysteries", "Thrillers", "Romance", "Fantasy", "Science Fiction", "Horror", "Poetry", "Drama",
            "Essays", "Biographies", "Memoirs", "Histories", "Cookbooks", "Travel Guides", "Short Stories",
            "Graphic Novels", "Sagas", "Westerns", "Satire", "Fables", "Folklore", "Letters", "Diaries", "Criticism",
            "Philosophy", "Theology", "Economics", "Anthologies", "Picture Books", "Adventure", "Crime", "Espionage",
            "Sea Stories", "War Stories", "Humor", "Family Life", "Coming of Age", "Suspense", "Classics",
        ],
        "brands": [
            "Penguin", "HarperCollins", "Vintage", "Random House", "Scribner", "Knopf", "Bantam", "Tor", "Del Rey",
            "Ballantine", "Simon & Schuster", "Little, Brown", "Doubleday", "Picador", "Anchor", "Grand Central",
        ],
        "odd_brands": [
            "Éditions Gallimard", "Müller Verlag", "Señora Press", "Zoë Books", "Ångström House", "Niño Libros",
        ],
        "units": ["Edition", "Vol.", "Book", "Part", "Set", "Series"],
    },
}

FIRST_NAMES = [
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William", "Elizabeth", "David",
    "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen", "Chris", "Nancy",
    "Daniel", "Lisa", "Matthew", "Betty", "Anthony", "Margaret", "Mark", "Sandra", "José", "Zoë", "Renée", "Jürgen",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Martin", "Lee", "O'Brien",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Young", "Allen", "King", "Wright", "Núñez", "Müller",
]
NICKNAMES = ["gadget guy", "bookworm", "Yeah, well, that's just like, u...", "audiophile", "the reviewer", "Mom of 3"]
SENTENCES = [
    "Works exactly as described.", "Does what it's supposed to do.", "Arrived quickly and well packed.",
    "Good value for the money.", "I've bought three of these so far.", "Not as sturdy as I hoped.",
    "The instructions were a bit confusing.", "My kids love it.", "Would buy again.",
    "It stopped working after a month.", "Great quality, fast shipping.", "A bit pricey but worth it.",
    "The \"premium\" label is well deserved.", "Exactly what I needed for the job.", "Fits perfectly.",
    "Five stars, no complaints.", "Returned it; it didn't fit.", "Better than the original.",
    "Customer service was helpful.", "Nice design, solid build.", "Cheap, but it does the job.",
    "The café-style finish looks great.", "Read it in one sitting.", "Recommended to all my friends.",
]
SUMMARIES = {
    1: ["Terrible", "Don't buy", "Broke in a week", "One Star", "Waste of money"],
    2: ["Disappointing", "Not great", "Two Stars", "Meh", "Expected more"],
    3: ["OK", "Average", "Three Stars", "It's fine", "Decent for the price"],
    4: ["Very good", "Four Stars", "Solid", "Works well", "Happy with it"],
    5: ["Five Stars", "Excellent!", "Love it", "Perfect", "Great \"must have\" item", "Best purchase this year"],
}
STYLES = {
    "Books": [
        {"Format:": " Paperback"}, {"Format:": " Hardcover"}, {"Format:": " Kindle Edition"},
        {"Format:": " Mass Market Paperback"}, {"Format:": " Audible Audiobook"},
    ],
    "Electronics": [
        {"Color:": " Black"}, {"Color:": " White"}, {"Size:": " 6 ft"}, {"Style:": " Pro"},
        {"Size:": " 64GB", "Color:": " Silver"},
    ],
}
PRICE_JUNK = ".a-box-inner{background-color:#fff;}.a-box-inner{background-color:#fff;}"
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip

