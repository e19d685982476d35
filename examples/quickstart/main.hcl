# Quickstart: Shopify-like products from a JSON file → an item mapping → NDJSON.
# Run it:   ferry run examples/quickstart
# Test it:  ferry test examples/quickstart

ferry {
  tenant = "acme"
}

variable "output" {
  type        = string
  default     = "out/items.ndjson"
  description = "Where the mapped items are written, relative to this directory."
}

connection "catalog" {
  type = "file"
  path = "data"
}

connection "warehouse" {
  type = "file"
  path = "."
}

table "product_families" {
  values = {
    Shirts      = "apparel"
    Sweatshirts = "apparel"
    Socks       = "apparel"
    Hats        = "accessories"
    Bags        = "accessories"
  }
  default = "other"
}

mapping "product_to_item" {
  key    = "string(id)"
  filter = "status != 'archived'"

  fields = {
    sku         = "variants[0].sku"
    name        = "trim(title)"
    vendor      = "vendor"
    family      = "lookup('product_families', product_type)"
    price_cents = "int(round(parseMoney(variants[0].price) * 100))"
    stock       = "sum(map(variants, .inventory_quantity))"
    tags        = "tags == '' ? [] : split(tags, ', ')"
    active      = "status == 'active'"
    updated_at  = "formatTime(parseTime(updated_at), '2006-01-02T15:04:05Z07:00', 'UTC')"
    "source.id" = "admin_graphql_api_id"
  }
}

integration "products_to_items" {
  source {
    connection = connection.catalog
    path       = "products.json"
  }

  normalize {
    require = ["id", "title", "variants"]
  }

  transform {
    mapping = mapping.product_to_item
  }

  target {
    connection = connection.warehouse
    path       = var.output
    format     = "ndjson"
    operation  = "upsert"
  }
}
