variable "data_dir" {
  type = string
}

connection "files" {
  type = "file"
  path = var.data_dir
}
