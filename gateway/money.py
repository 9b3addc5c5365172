"""Money as integer minor units of an ISO 4217 currency.

Amounts never pass through float arithmetic: decimals come in as ``Decimal`` (or a string or an
int), are checked against the currency's real exponent, and are scaled exactly. An amount with
more precision than its currency allows is refused (``MoneyError``), never silently rounded; the
one place rounding is allowed is :meth:`Money.split_half_even`, used to derive a unit price from a
total at the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Iterable

# Active ISO 4217 codes with an exponent other than 2. Every other code in ISO_4217 uses 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}

ISO_4217: frozenset[str] = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK
    JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK
    MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB
    TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD
    XCG XOF XPF YER ZAR ZMW ZWG ZWL""".split()
)


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def normalise_currency(code: str) -> str:
    """Upper-case and check an ISO 4217 code; raise ``MoneyError`` for an unknown one."""
    if not isinstance(code, str):
        raise MoneyError(f"currency must be a string, got {type(code).__name__}")
    upper = code.strip().upper()
    if upper not in ISO_4217:
        raise MoneyError(f"unknown currency code {code!r} (expected ISO 4217, e.g. USD)")
    return upper


def exponent(currency: str) -> int:
    """The number of decimal places of a currency's minor unit (JPY 0, USD 2, BHD 3)."""
    return _EXPONENTS.get(normalise_currency(currency), 2)


def _to_decimal(amount: Decimal | str | int) -> Decimal:
    if isinstance(amount, bool) or isinstance(amount, float):
        # Floats are refused: 0.1 + 0.2 is not 0.3. Callers parsing JSON use parse_float=Decimal
        # or pass str(value).
        raise MoneyError("amounts must be Decimal, str or int, not float")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise MoneyError(f"not a number: {amount!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not a finite amount: {amount!r}")
    return value


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``minor`` units of ``currency`` (cents for USD, yen for JPY)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise MoneyError(f"minor units must be an int, got {self.minor!r}")
        object.__setattr__(self, "currency", normalise_currency(self.currency))

    @classmethod
    def from_decimal(cls, amount: Decimal | str | int, currency: str) -> "Money":
        """Exact conversion from a decimal amount; too many decimal places is an error."""
        value = _to_decimal(amount)
        exp = exponent(currency)
        scaled = value.scaleb(exp)
        if scaled != scaled.to_integral_value():
            raise MoneyError(
                f"{value} has more precision than {currency.upper()} allows ({exp} decimal places)"
            )
        return cls(int(scaled), currency)

    @classmethod
    def zero(cls, currency: str) -> "Money":
        return cls(0, currency)

    def to_decimal(self) -> Decimal:
        """The amount as a Decimal with exactly the currency's number of places."""
        exp = exponent(self.currency)
        return Decimal(self.minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))

    def __str__(self) -> str:
        return f"{self.to_decimal()} {self.currency}"

    def _same(self, other: "Money") -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __mul__(self, factor: int) -> "Money":
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise TypeError("Money can only be multiplied by an int (a quantity)")
        return Money(self.minor * factor, self.currency)

    __rmul__ = __mul__

    def __neg__(self) -> "Money":
        return Money(-self.minor, self.currency)

    def split_half_even(self, parts: int) -> "Money":
        """The amount divided by ``parts``, rounded half-even to the minor unit.

        Used only at the wire, to derive a unit price from a line total; totals stay exact.
        """
        if parts <= 0:
            raise MoneyError("cannot divide an amount into zero or fewer parts")
        quotient = (Decimal(self.minor) / Decimal(parts)).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
        return Money(int(quotient), self.currency)


def money_sum(amounts: Iterable[Money], currency: str) -> Money:
    """Sum amounts of one currency exactly; an amount in another currency is an error."""
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total
