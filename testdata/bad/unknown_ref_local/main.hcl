locals {
  data_dir = "data"
}

connection "files" {
  type = "file"
  path = local.datadir
}
