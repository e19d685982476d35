ferry {
  tenant = "acme"
}

ferry {
  tenant = "other"
}
