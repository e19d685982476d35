test "active_product_maps" {
  mapping = mapping.product_to_row
  input   = jsondecode(file("testdata/product.json"))
  expect = {
    shopify_id      = "8123456789012"
    gid             = "gid://shopify/Product/8123456789012"
    handle          = "organic-cotton-tee"
    title           = "Organic Cotton Tee"
    vendor          = "Acme Apparel"
    product_type    = "Shirts"
    status          = "active"
    tags            = ["cotton", "organic", "tee"]
    skus            = ["TEE-ORG-S", "TEE-ORG-M", "TEE-ORG-L"]
    variant_count   = 3
    price_min       = 19.99
    price_max       = 21.99
    on_sale         = true
    inventory_total = 42 + 57 + 0
    published       = true
    published_at    = "2024-11-04T14:15:00Z"
    updated_at      = "2025-03-18T18:27:05Z"
  }
}

test "draft_product_is_not_published" {
  mapping = mapping.product_to_row
  input   = merge(jsondecode(file("testdata/product.json")), { status = "DRAFT", productType = "" })
  expect  = { status = "draft", published = false, product_type = null }
}

test "internal_product_is_skipped" {
  mapping     = mapping.product_to_row
  input       = merge(jsondecode(file("testdata/product.json")), { tags = ["internal", "sample"] })
  expect_skip = true
}

test "whole_integration" {
  integration = integration.products_to_postgres
  records = [
    {
      id        = "gid://shopify/Product/1", legacyResourceId = "1", title = "  Enamel Mug ", handle = "enamel-mug"
      status    = "ACTIVE", vendor = "Acme Home", productType = "Mugs", tags = [], publishedAt = null
      updatedAt = "2025-03-01T10:00:00+01:00"
      variants = { nodes = [
        { sku = "MUG-BLU", price = "12.50", compareAtPrice = null, inventoryQuantity = 7 },
        { sku = "", price = "9.00", compareAtPrice = "12.00", inventoryQuantity = null },
      ] }
    },
    {
      id   = "gid://shopify/Product/2", legacyResourceId = "2", title = "Sample tee", status = "DRAFT"
      tags = ["internal"], updatedAt = "2025-03-02T00:00:00Z", variants = { nodes = [] }
    },
    { id = "gid://shopify/Product/3", legacyResourceId = "3", updatedAt = "2025-03-03T00:00:00Z" },
  ]
  expect_writes = [
    {
      shopify_id = "1", title = "Enamel Mug", status = "active", tags = [], skus = ["MUG-BLU"], variant_count = 2
      price_min  = 9, price_max = 12.5, on_sale = true, inventory_total = 7, published = false, published_at = null
      updated_at = "2025-03-01T09:00:00Z"
    },
  ]
  expect_counts = { total = 3, success = 1, skipped = 1, failed = 1 }
}
