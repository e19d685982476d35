variable "data_dir" {
  type    = string
  default = "data"
}

connection "files" {
  type = "file"
  path = var.data_dri
}
