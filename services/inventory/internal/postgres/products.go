package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/page"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/services/inventory/internal/product"
	"github.com/bazaar-shop/bazaar/services/inventory/inventoryevents"
)

// writeProductEvent writes p's product.created or product.updated, in the wire form
// inventoryevents publishes.
func writeProductEvent(ctx context.Context, tx pgx.Tx, typ inventoryevents.Type, p product.Product) error {
	d := inventoryevents.ProductCreated{
		ID: p.ID, SKU: p.SKU.String(), Name: p.Name.String(), Description: p.Description.String(),
		PriceCents: int64(p.Price), Currency: p.Currency.String(), Stock: int(p.Stock),
	}
	var data any = d
	if typ == inventoryevents.TypeProductUpdated {
		data = inventoryevents.ProductUpdated(d)
	}
	return outbox.Write(ctx, tx, outbox.Event{
		Stream:  inventoryevents.Stream,
		Type:    string(typ),
		Source:  inventoryevents.Source,
		Subject: p.ID.String(),
		Time:    p.UpdatedAt,
		Data:    data,
	})
}

const productColumns = `id, sku, name, description, price_cents, currency, stock, created_at, updated_at`

func productArgs(p product.Product) []any {
	return []any{p.ID, p.SKU, p.Name, p.Description, p.Price, p.Currency, p.Stock, p.CreatedAt, p.UpdatedAt}
}

const insertProduct = `INSERT INTO products (` + productColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`

func scanProduct(row pgx.Row) (product.Product, error) {
	var p product.Product
	err := row.Scan(&p.ID, &p.SKU, &p.Name, &p.Description, &p.Price, &p.Currency, &p.Stock, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return product.Product{}, product.ErrNotFound
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

// CreateProduct implements product.Store.
func (s *Store) CreateProduct(ctx context.Context, p product.Product) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insertProduct, productArgs(p)...); err != nil {
			return err
		}
		return writeProductEvent(ctx, tx, inventoryevents.TypeProductCreated, p)
	})
	if pgdb.IsUniqueViolation(err, "products_sku_key") {
		return product.ErrSKUTaken
	}
	return dbError(err, "create product")
}

// UpdateProduct implements product.Store. It is one UPDATE, so the fields the patch
// leaves alone, the stock above all, keep whatever a concurrent transaction committed.
// A SKU another product has is refused by the unique constraint, as on create, which
// rolls the whole patch back; two patches racing for one SKU are decided there too.
func (s *Store) UpdateProduct(ctx context.Context, id uuid.UUID, patch product.Patch, now time.Time) (product.Product, error) {
	var p product.Product
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		p, err = scanProduct(tx.QueryRow(ctx,
			`UPDATE products SET
			     sku         = COALESCE($2, sku),
			     name        = COALESCE($3, name),
			     description = COALESCE($4, description),
			     price_cents = COALESCE($5, price_cents),
			     stock       = COALESCE($6, stock),
			     updated_at  = $7
			 WHERE id = $1
			 RETURNING `+productColumns,
			id, patch.SKU, patch.Name, patch.Description, patch.Price, patch.Stock, now))
		if err != nil {
			return err
		}
		return writeProductEvent(ctx, tx, inventoryevents.TypeProductUpdated, p)
	})
	if pgdb.IsUniqueViolation(err, "products_sku_key") {
		return product.Product{}, product.ErrSKUTaken
	}
	if err != nil {
		return product.Product{}, dbError(err, "update product")
	}
	return p, nil
}

// Product implements product.Store.
func (s *Store) Product(ctx context.Context, id uuid.UUID) (product.Product, error) {
	p, err := scanProduct(s.pool.QueryRow(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1`, id))
	return p, dbError(err, "product")
}

// Products implements product.Store. The row comparison walks the (created_at, id)
// index from the cursor on. A search is a filter on that walk, with no index of its
// own: the catalogue is small, so reading it in order until a page is full is cheap.
// (A trigram index would need pg_trgm, and CREATE EXTENSION a privilege the deploy's
// role may not have.) Without a search the query is the plain walk it always was.
func (s *Store) Products(ctx context.Context, search product.Search, pr page.Request) ([]product.Product, error) {
	query := `SELECT ` + productColumns + ` FROM products`
	var conds []string
	var args []any
	if pr.After != nil {
		args = append(args, pr.After.Time, pr.After.ID)
		conds = append(conds, `(created_at, id) > ($1, $2)`)
	}
	if words := search.Words(); len(words) > 0 {
		// One text of the three fields, a space between them: a word has no white
		// space, so it matches there only where it matches within one field, and
		// ILIKE ALL asks that every word match somewhere. ILIKE folds letter case
		// as the database's LC_CTYPE does: ASCII letters under any, others (é, Ä)
		// under a UTF-8 one, not under plain C.
		args = append(args, likePatterns(words))
		conds = append(conds, fmt.Sprintf(`(name || ' ' || sku || ' ' || description) ILIKE ALL ($%d::text[])`, len(args)))
	}
	if len(conds) > 0 {
		query += ` WHERE ` + strings.Join(conds, ` AND `)
	}
	args = append(args, pr.Limit+1)
	query += fmt.Sprintf(` ORDER BY created_at, id LIMIT $%d`, len(args))
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, dbError(err, "list products")
	}
	ps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (product.Product, error) { return scanProduct(row) })
	return ps, dbError(err, "list products")
}

// likeEscaper escapes LIKE's wildcards and its escape character (a backslash, the
// default), so that a word matches as the text it is.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// likePatterns are the ILIKE patterns "contains word", one per word.
func likePatterns(words []string) []string {
	ps := make([]string, len(words))
	for i, w := range words {
		ps[i] = "%" + likeEscaper.Replace(w) + "%"
	}
	return ps
}

// SeedProducts implements product.Store. A product whose SKU exists is skipped by
// ON CONFLICT; a replica seeding at the same moment waits on the other's uncommitted
// SKU and then skips it too.
func (s *Store) SeedProducts(ctx context.Context, ps []product.Product) (int, error) {
	created := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		created = 0
		for _, p := range ps {
			tag, err := tx.Exec(ctx, insertProduct+` ON CONFLICT (sku) DO NOTHING`, productArgs(p)...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			created++
			if err := writeProductEvent(ctx, tx, inventoryevents.TypeProductCreated, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, dbError(err, "seed products")
	}
	return created, nil
}
