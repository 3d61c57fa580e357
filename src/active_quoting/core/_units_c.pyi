PRICE_DECIMALS: int
SIZE_DECIMALS: int
PRICE_SCALE: int
SIZE_SCALE: int
MAX_PRICE: int
MAX_SIZE: int
NO_PRICE: int
BID: int
ASK: int

def check_int(value: object, low: int, high: int, field: str) -> int:
    """``value`` if it is an int in [low, high]; otherwise a UnitsError naming ``field``."""

def parse_price(s: object, field: str = "price") -> int:
    """Parse a venue price string ("0.5", ".48", "1") to units of 1e-4, in [0, 10000]."""

def parse_size(s: object, field: str = "size") -> int:
    """Parse a venue size string ("1016.87", "219.217767") to micro-shares, in [0, MAX_SIZE]."""

def format_price(units: object, field: str = "price") -> str:
    """Format price units as the venue writes them: "0.5", "0.951", "1", "0"."""

def format_size(micro: object, field: str = "size") -> str:
    """Format micro-shares as the venue writes them: "1016.87", "40", "219.217767"."""
