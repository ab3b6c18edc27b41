//! The syntax tree of one varlink interface.

/// One parsed and validated interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// Fully qualified name, e.g. `org.varlink.service`.
    pub name: String,
    /// Doc comment lines before the `interface` keyword (without the leading `#` and one space).
    pub doc: Vec<String>,
    /// Declarations in source order.
    pub members: Vec<Member>,
}

/// A declaration inside an interface.
#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    /// `type Name ...`
    Type(TypeDef),
    /// `method Name(...) -> (...)`
    Method(Method),
    /// `error Name (...)`
    Error(ErrorDef),
}

/// `type Name <struct or enum>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeDef {
    /// `[A-Z][A-Za-z0-9]*`, unique among the interface's types, methods and errors.
    pub name: String,
    /// Doc comment lines (without the leading `#` and one space).
    pub doc: Vec<String>,
    /// Always [`Type::Struct`] or [`Type::Enum`].
    pub ty: Type,
}

/// `method Name(input) -> (output)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    /// `[A-Z][A-Za-z0-9]*`, unique among the interface's types, methods and errors.
    pub name: String,
    /// Doc comment lines (without the leading `#` and one space).
    pub doc: Vec<String>,
    /// Input parameters, in declaration order.
    pub input: Vec<Field>,
    /// Output parameters, in declaration order.
    pub output: Vec<Field>,
}

/// `error Name (parameters)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorDef {
    /// `[A-Z][A-Za-z0-9]*`, unique among the interface's types, methods and errors.
    pub name: String,
    /// Doc comment lines (without the leading `#` and one space).
    pub doc: Vec<String>,
    /// Error parameters, in declaration order.
    pub parameters: Vec<Field>,
}

/// A named field of a struct, method input/output or error.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// `[A-Za-z](_?[A-Za-z0-9])*`, unique within its struct.
    pub name: String,
    /// Doc comment lines (without the leading `#` and one space).
    pub doc: Vec<String>,
    /// The field's type.
    pub ty: Type,
}

/// A variant of an enum.
#[derive(Debug, Clone, PartialEq)]
pub struct EnumVariant {
    /// `[A-Za-z](_?[A-Za-z0-9])*`, unique within its enum; the JSON string value.
    pub name: String,
    /// Doc comment lines (without the leading `#` and one space).
    pub doc: Vec<String>,
}

/// A varlink type expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// `bool`
    Bool,
    /// `int`: a JSON integer (i64, or u64 for large unsigned values).
    Int,
    /// `float`: any JSON number.
    Float,
    /// `string`
    String,
    /// Any JSON object.
    Object,
    /// Any JSON value but null.
    Any,
    /// A reference to a `type` declared in the same interface.
    Named(String),
    /// Inline struct `(a: int, b: ?string)`; `()` is the empty struct.
    Struct(Vec<Field>),
    /// Inline enum `(one, two)`, carried as JSON strings.
    Enum(Vec<EnumVariant>),
    /// `[]T`
    Array(Box<Type>),
    /// `[string]T`; `[string]()` (a set) is `Map(Struct(vec![]))`.
    Map(Box<Type>),
    /// `?T`
    Nullable(Box<Type>),
}

impl Interface {
    /// The method called `name`, if declared.
    pub fn method(&self, name: &str) -> Option<&Method> {
        self.members.iter().find_map(|m| match m {
            Member::Method(m) if m.name == name => Some(m),
            _ => None,
        })
    }

    /// The type declaration called `name`, if declared.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.members.iter().find_map(|m| match m {
            Member::Type(t) if t.name == name => Some(t),
            _ => None,
        })
    }

    /// The error declaration called `name`, if declared.
    pub fn error(&self, name: &str) -> Option<&ErrorDef> {
        self.members.iter().find_map(|m| match m {
            Member::Error(e) if e.name == name => Some(e),
            _ => None,
        })
    }

    /// All methods in source order.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        self.members.iter().filter_map(|m| match m {
            Member::Method(m) => Some(m),
            _ => None,
        })
    }
}
