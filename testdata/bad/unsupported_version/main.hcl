ferry {
  tenant           = "acme"
  required_version = ">= 99.0"
}
