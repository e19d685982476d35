# Shopify products → PostgreSQL, incrementally: each run reads only the products
# updated since the last settled updatedAt and upserts them into a products table.
#
# Run it:   psql "$DATABASE_URL" -f schema.sql
#           FERRY_SECRET_SHOPIFY_ADMIN_TOKEN=shpat_... ferry run examples/shopify-to-postgres
# Test it:  ferry test examples/shopify-to-postgres

ferry {
  tenant = "acme"
}

connection "shop" {
  type  = "shopify"
  store = env("SHOPIFY_STORE", "acme-apparel.myshopify.com")
  token = secret("shopify_admin_token") # Admin API token with read_products
  # Empty means https://<store>; tests and proxies point it elsewhere.
  base_url = env("SHOPIFY_BASE_URL", "")
}

connection "warehouse" {
  type            = "postgres"
  url             = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
  max_connections = 4
}

mapping "product_to_row" {
  key = "legacyResourceId"
  # Staff-only samples are tagged "internal" in the shop and stay out of the warehouse.
  filter = "!('internal' in tags)"

  fields = {
    # The numeric id as a string: PostgreSQL parses it into the bigint column
    # exactly, where a JSON number would lose digits above 2^53.
    shopify_id      = "legacyResourceId"
    gid             = "id"
    handle          = "handle"
    title           = "title"
    vendor          = "vendor"
    product_type    = "productType == '' ? null : productType"
    status          = "lower(status)"
    tags            = "tags"
    skus            = "filter(map(variants.nodes, .sku), # != null && # != '')"
    variant_count   = "len(variants.nodes)"
    price_min       = "min(map(variants.nodes, parseMoney(.price)))"
    price_max       = "max(map(variants.nodes, parseMoney(.price)))"
    on_sale         = "any(variants.nodes, .compareAtPrice != null && parseMoney(.compareAtPrice) > parseMoney(.price))"
    inventory_total = "sum(map(variants.nodes, .inventoryQuantity))"
    published       = "publishedAt != null && status == 'ACTIVE'"
    published_at    = "formatTime(publishedAt, 'RFC3339', 'UTC')"
    updated_at      = "formatTime(updatedAt, 'RFC3339', 'UTC')"
  }
  casts = {
    price_min = "decimal"
    price_max = "decimal"
  }
  defaults = {
    inventory_total = 0
  }
}

integration "products_to_postgres" {
  source {
    connection = connection.shop
    resource   = "products"
    # Each product in a page costs 54 query cost points (its first 25 variants
    # come with it) and Shopify refuses a query above 1,000 points: 18 is the
    # most that fits, and the default. More variants come in follow-up queries.
    page_size = 18
    cursor    = "updatedAt" # incremental: only products updated since the last run
  }

  normalize {
    require = ["id", "legacyResourceId", "title", "updatedAt"]
  }

  transform {
    mapping = mapping.product_to_row
  }

  target {
    connection  = connection.warehouse
    table       = "products"
    key_columns = ["shopify_id"]
    operation   = "upsert"
  }

  retry {
    max_attempts = 5
    initial      = "1s"
    max          = "1m"
  }
}

schedule "products_every_15m" {
  integration = integration.products_to_postgres
  cron        = "*/15 * * * *"
  concurrency = "forbid"
}
