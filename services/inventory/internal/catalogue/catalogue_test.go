package catalogue

import "testing"

func TestCatalogueParsesAndIsUsable(t *testing.T) {
	t.Parallel()
	ps, err := Products()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) < 20 {
		t.Errorf("%d products, want at least 20 (docs/contract.md)", len(ps))
	}
	skus := map[string]bool{}
	for _, p := range ps {
		if skus[p.SKU.String()] {
			t.Errorf("sku %s appears twice: the seed is keyed by sku", p.SKU)
		}
		skus[p.SKU.String()] = true
		if p.Currency != "USD" {
			t.Errorf("%s is priced in %s; the seeded catalogue is in USD", p.SKU, p.Currency)
		}
		if p.Stock < 20 {
			t.Errorf("%s has a stock of %d; a demo catalogue should have plenty", p.SKU, p.Stock)
		}
		if p.Description == "" {
			t.Errorf("%s has no description", p.SKU)
		}
	}
}
