package notification

import (
	"fmt"
	"strconv"
	"strings"
)

// Money is an amount in a currency's minor units (cents), as every Bazaar event
// carries it: integers, never floats.
type Money struct {
	Cents    int64
	Currency string // ISO 4217, upper case: USD
}

// NewMoney checks an amount: not negative, with a three-letter currency code (upper
// cased). It fails with a message naming the bad part.
func NewMoney(cents int64, currency string) (Money, error) {
	currency = strings.ToUpper(strings.TrimSpace(currency))
	if len(currency) != 3 || strings.Trim(currency, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return Money{}, fmt.Errorf("currency %q is not a three-letter code", currency)
	}
	if cents < 0 {
		return Money{}, fmt.Errorf("amount %d is negative", cents)
	}
	return Money{Cents: cents, Currency: currency}, nil
}

// symbols are the currencies written with a sign before the amount; others are
// written "1,234.50 CHF".
var symbols = map[string]string{"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

// exponent is how many minor-unit digits a currency has (ISO 4217); 2 unless listed.
func exponent(currency string) int {
	switch currency {
	case "JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF":
		return 0
	case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND":
		return 3
	}
	return 2
}

// String writes the amount for people: "$1,234.56", "¥500", "12.50 CHF".
func (m Money) String() string {
	cents := m.Cents
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	exp := exponent(m.Currency)
	unit := int64(1)
	for range exp {
		unit *= 10
	}
	amount := group(strconv.FormatInt(cents/unit, 10))
	if exp > 0 {
		amount += fmt.Sprintf(".%0*d", exp, cents%unit)
	}
	if sym, ok := symbols[m.Currency]; ok {
		return sign + sym + amount
	}
	return sign + amount + " " + m.Currency
}

// group puts thousands separators into a string of digits.
func group(digits string) string {
	if len(digits) <= 3 {
		return digits
	}
	var b strings.Builder
	first := len(digits) % 3
	if first > 0 {
		b.WriteString(digits[:first])
	}
	for i := first; i < len(digits); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(digits[i : i+3])
	}
	return b.String()
}
