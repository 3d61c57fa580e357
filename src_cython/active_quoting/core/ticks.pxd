# Types and sentinels shared by every compiled core module; mirrors the constants of
# active_quoting/core/_units_py.py (a test checks they agree).
from libc.stdint cimport int64_t, uint64_t

ctypedef int64_t price_t    # units of 1e-4
ctypedef int64_t qty_t      # micro-shares (1e-6)

cdef enum:
    PRICE_DECIMALS = 4
    SIZE_DECIMALS = 6
    PRICE_SCALE = 10000
    MAX_PRICE = 10000
    N_PRICES = 10001        # prices 0..10000 inclusive
    N_WORDS = 157           # ceil(N_PRICES / 64): one bit per price level
    NO_PRICE = -1           # empty side; real prices are never negative
    BID = 0
    ASK = 1

cdef extern from *:
    """
    #define AQ_SIZE_SCALE 1000000LL
    #define AQ_MAX_SIZE 900000000000000LL
    """
    const int64_t SIZE_SCALE "AQ_SIZE_SCALE"
    const int64_t MAX_SIZE "AQ_MAX_SIZE"
