module portico.local/wasmplugins

go 1.26
