test "active_product_maps" {
  mapping = mapping.product_to_item
  input   = jsondecode(file("testdata/product.json"))
  expect = {
    sku         = "TEE-ORG-S"
    name        = "Organic Cotton Tee"
    vendor      = "Acme Apparel"
    family      = "apparel"
    price_cents = 1999
    stock       = 42 + 57 + 0
    tags        = ["cotton", "organic", "tee"]
    active      = true
    updated_at  = "2025-03-18T18:27:05Z"
    source      = { id = "gid://shopify/Product/8123456789012" }
  }
}

test "archived_product_is_skipped" {
  mapping     = mapping.product_to_item
  input       = merge(jsondecode(file("testdata/product.json")), { status = "archived" })
  expect_skip = true
}

test "whole_integration" {
  integration = integration.products_to_items
  records = [
    {
      id                   = 1
      title                = "  Mug "
      status               = "active"
      vendor               = "Acme"
      product_type         = "Kitchen"
      tags                 = ""
      updated_at           = "2025-03-01T10:00:00+01:00"
      admin_graphql_api_id = "gid://shopify/Product/1"
      variants             = [{ sku = "MUG-1", price = "9.50", inventory_quantity = 3 }]
    },
    { id = 2, title = "Old mug", status = "archived", variants = [] },
    { id = 3, status = "active" },
  ]
  expect_writes = [
    {
      sku         = "MUG-1"
      name        = "Mug"
      vendor      = "Acme"
      family      = "other"
      price_cents = 950
      stock       = 3
      tags        = []
      active      = true
      updated_at  = "2025-03-01T09:00:00Z"
      source      = { id = "gid://shopify/Product/1" }
    },
  ]
  expect_counts = { total = 3, success = 1, skipped = 1, failed = 1 }
}
