mapping "items" {
  filter = <<EXPR
status != 'archived' &&
  price >
EXPR
  fields = { sku = "sku" }
}
