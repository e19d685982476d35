package file

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Product is one record of the generated Shopify-like product dataset.
type Product struct {
	ID          int64            `json:"id"`
	Title       string           `json:"title"`
	BodyHTML    string           `json:"body_html"`
	Vendor      string           `json:"vendor"`
	ProductType string           `json:"product_type"`
	Handle      string           `json:"handle"`
	Status      string           `json:"status"`
	Tags        string           `json:"tags"`
	CreatedAt   string           `json:"created_at"`
	UpdatedAt   string           `json:"updated_at"`
	Variants    []ProductVariant `json:"variants"`
}

// ProductVariant is one variant of a generated product.
type ProductVariant struct {
	ID                int64   `json:"id"`
	ProductID         int64   `json:"product_id"`
	Title             string  `json:"title"`
	SKU               string  `json:"sku"`
	Price             string  `json:"price"`
	CompareAtPrice    *string `json:"compare_at_price"`
	InventoryQuantity int     `json:"inventory_quantity"`
	Option1           string  `json:"option1"`
	Barcode           string  `json:"barcode"`
	Grams             int     `json:"grams"`
}

var (
	genAdjectives = []string{"Classic", "Organic", "Vintage", "Slim", "Rugged", "Everyday", "Premium", "Lightweight", "Handmade", "Recycled"}
	genMaterials  = []string{"Cotton", "Linen", "Wool", "Leather", "Canvas", "Denim", "Bamboo", "Cashmere"}
	genNouns      = []string{"T-Shirt", "Hoodie", "Tote Bag", "Beanie", "Jacket", "Scarf", "Backpack", "Socks", "Cap", "Apron"}
	genVendors    = []string{"Northwind Goods", "Acme Apparel", "Fjord & Field", "Urban Thread", "Blue Harbor"}
	genTypes      = []string{"Apparel", "Accessories", "Bags", "Outerwear", "Headwear"}
	genTags       = []string{"summer", "winter", "sale", "new", "bestseller", "eco", "gift", "limited", "unisex", "basics"}
	genSentences  = []string{
		"Made to last and easy to care for.",
		"Cut for a relaxed fit that works every day.",
		"Sourced from certified mills & finished by hand.",
		"Machine washable at 30 degrees; dry flat.",
		"A timeless piece for every wardrobe.",
		"Ships in plastic-free packaging.",
	}
	genSizes = []string{"XS", "S", "M", "L", "XL"}
)

// genEpoch is the earliest created_at of the dataset.
var genEpoch = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)

// newProduct returns product number i (0-based) of the dataset of a seed. The
// product's id is i+1 and its variants' SKUs are "SKU-<id>-<n>".
func newProduct(rng *rand.Rand, i int) Product {
	id := int64(i + 1)
	adj := genAdjectives[rng.IntN(len(genAdjectives))]
	mat := genMaterials[rng.IntN(len(genMaterials))]
	noun := genNouns[rng.IntN(len(genNouns))]
	name := adj + " " + mat + " " + noun
	title := name
	if rng.IntN(10) == 0 { // untrimmed input, as real exports have
		title = "  " + name + " "
	}
	var body strings.Builder
	body.WriteString("<p>")
	for k, n := 0, 2+rng.IntN(3); k < n; k++ {
		if k > 0 {
			body.WriteByte(' ')
		}
		body.WriteString(genSentences[rng.IntN(len(genSentences))])
	}
	body.WriteString("</p>")

	status := "active"
	switch r := rng.IntN(100); {
	case r < 10:
		status = "archived"
	case r < 22:
		status = "draft"
	}
	ntags := 1 + rng.IntN(4)
	tags := make([]string, 0, ntags)
	for _, k := range rng.Perm(len(genTags))[:ntags] {
		tags = append(tags, genTags[k])
	}
	created := genEpoch.Add(time.Duration(i)*time.Hour + time.Duration(rng.IntN(3600))*time.Second)
	updated := created.Add(time.Duration(rng.IntN(90*24)) * time.Hour)

	p := Product{
		ID:          id,
		Title:       title,
		BodyHTML:    body.String(),
		Vendor:      genVendors[rng.IntN(len(genVendors))],
		ProductType: genTypes[rng.IntN(len(genTypes))],
		Handle:      strings.ToLower(strings.ReplaceAll(name, " ", "-")) + "-" + strconv.FormatInt(id, 10),
		Status:      status,
		Tags:        strings.Join(tags, ", "),
		CreatedAt:   created.Format(time.RFC3339),
		UpdatedAt:   updated.Format(time.RFC3339),
	}
	nv := 1 + rng.IntN(4)
	cents := 500 + rng.IntN(15000)
	for v := 0; v < nv; v++ {
		size := genSizes[(v+rng.IntN(2))%len(genSizes)]
		price := cents + v*100
		variant := ProductVariant{
			ID:                40_000_000_000 + id*10 + int64(v),
			ProductID:         id,
			Title:             size,
			SKU:               fmt.Sprintf("SKU-%d-%d", id, v),
			Price:             fmt.Sprintf("%d.%02d", price/100, price%100),
			InventoryQuantity: rng.IntN(200) - 5,
			Option1:           size,
			Barcode:           fmt.Sprintf("%013d", rng.Int64N(1e13)),
			Grams:             100 + rng.IntN(900),
		}
		if rng.IntN(10) < 3 {
			cmp := price + price/4
			s := fmt.Sprintf("%d.%02d", cmp/100, cmp%100)
			variant.CompareAtPrice = &s
		}
		p.Variants = append(p.Variants, variant)
	}
	return p
}

// newProductRand returns the random source GenerateProducts uses for a seed.
func newProductRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
}

// GenerateProducts writes n deterministic Shopify-like products (about 800 bytes
// each as JSON) as a JSON array (format "json") or one per line ("ndjson").
// The same seed always produces the same bytes.
func GenerateProducts(w io.Writer, n int, seed int64, format string) error {
	if format != FormatJSON && format != FormatNDJSON {
		return fmt.Errorf(`generate products: unknown format %q; use "json" or "ndjson"`, format)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	rng := newProductRand(seed)
	if format == FormatJSON {
		bw.WriteString("[")
	}
	for i := 0; i < n; i++ {
		buf.Reset()
		if err := enc.Encode(newProduct(rng, i)); err != nil {
			return err
		}
		b := buf.Bytes()
		if format == FormatJSON {
			if i > 0 {
				bw.WriteString(",\n")
			} else {
				bw.WriteByte('\n')
			}
			b = b[:len(b)-1]
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	if format == FormatJSON {
		bw.WriteString("\n]\n")
	}
	return bw.Flush()
}
