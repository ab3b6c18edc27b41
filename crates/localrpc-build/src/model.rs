//! The interface lowered to what the code is generated from: every named and inline type
//! with its Rust name, fields with Rust identifiers and types, methods with their streaming
//! and upgrade modes, errors. All naming decisions and name collision checks happen here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use localrpc_idl::{Field, Interface, Member, Type};

use crate::names::{camel_ident, snake_ident, unraw};

/// Names the generated code declares besides the interface's own types.
pub(crate) const RESERVED_TYPE_NAMES: &[&str] = &[
    "Error",
    "Service",
    "Client",
    "Batch",
    "ReplySink",
    "ErrorParameters",
];

/// Functions of the generated `Client` and `Batch` besides the methods; a varlink method
/// whose snake_case name is one of these gets the suffix `_method` (`Run` → `run_method`).
pub(crate) const RESERVED_FN_NAMES: &[&str] =
    &["new", "connect", "connection", "into_inner", "batch", "run"];

/// A Rust type expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RustType {
    Bool,
    Int,
    Float,
    String,
    /// `serde_json::Value` (`object` and `any`).
    Value,
    /// `BTreeSet<String>` (a `[string]()` set, serialized through an adapter).
    Set,
    /// A generated type, by its Rust name.
    Named(String),
    Vec(Box<RustType>),
    /// `BTreeMap<String, T>`.
    Map(Box<RustType>),
    Option(Box<RustType>),
    /// Breaks a cycle of directly contained structs.
    Boxed(Box<RustType>),
}

/// How a field is (de)serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adapter {
    /// Plain serde.
    None,
    /// `BTreeSet<String>` as `{"key": {}}`.
    Set,
    /// `Option<BTreeSet<String>>` as `{"key": {}}` or absent.
    OptionSet,
}

/// A field of a struct, method input/output or error.
#[derive(Debug, Clone)]
pub(crate) struct FieldModel {
    /// The name on the wire.
    pub(crate) wire: String,
    /// The Rust identifier (`r#type` for keywords).
    pub(crate) ident: String,
    pub(crate) doc: Vec<String>,
    pub(crate) ty: RustType,
    pub(crate) adapter: Adapter,
}

impl FieldModel {
    /// Nullable fields may be absent on the wire.
    pub(crate) fn optional(&self) -> bool {
        matches!(self.ty, RustType::Option(_))
    }
}

/// A generated struct.
#[derive(Debug, Clone)]
pub(crate) struct StructModel {
    pub(crate) name: String,
    pub(crate) doc: Vec<String>,
    pub(crate) fields: Vec<FieldModel>,
}

/// A variant of a generated string enum.
#[derive(Debug, Clone)]
pub(crate) struct VariantModel {
    pub(crate) wire: String,
    pub(crate) ident: String,
    pub(crate) doc: Vec<String>,
}

/// A generated string enum with a catch-all variant for values it does not know.
#[derive(Debug, Clone)]
pub(crate) struct EnumModel {
    pub(crate) name: String,
    pub(crate) doc: Vec<String>,
    pub(crate) variants: Vec<VariantModel>,
    /// The catch-all variant holding an unknown value (`Unknown(String)`).
    pub(crate) unknown: String,
}

/// A generated type.
#[derive(Debug, Clone)]
pub(crate) enum TypeModel {
    Struct(StructModel),
    Enum(EnumModel),
}

impl TypeModel {
    pub(crate) fn name(&self) -> &str {
        match self {
            TypeModel::Struct(s) => &s.name,
            TypeModel::Enum(e) => &e.name,
        }
    }
}

/// Whether a method sends several replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// One reply (the default).
    No,
    /// Streams when the caller sets `more`, answers once otherwise (`[Supports 'more' flag]`).
    Supports,
    /// Only works with `more`; without it callers get `ExpectedMore` (`[Requires 'more' flag]`).
    Requires,
}

/// Whether a method hands the connection over to a raw byte protocol after its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// An ordinary method (the default).
    No,
    /// Upgrades when the caller sets `upgrade`, answers like an ordinary method otherwise
    /// (`[Supports 'upgrade' flag]`).
    Supports,
    /// Only works with `upgrade`; without it callers get `ExpectedUpgrade`
    /// (`[Requires 'upgrade' flag]`).
    Requires,
}

/// A method.
#[derive(Debug, Clone)]
pub(crate) struct MethodModel {
    /// The IDL name, e.g. `Test01`.
    pub(crate) name: String,
    /// The snake_case function name (`r#type` for keywords).
    pub(crate) ident: String,
    pub(crate) doc: Vec<String>,
    /// `<Method>Input`.
    pub(crate) input: String,
    /// `<Method>Output`.
    pub(crate) output: String,
    pub(crate) input_fields: Vec<FieldModel>,
    pub(crate) streaming: Streaming,
    pub(crate) upgrade: Upgrade,
}

/// An error.
#[derive(Debug, Clone)]
pub(crate) struct ErrorModel {
    /// The IDL name, also the variant name.
    pub(crate) name: String,
    pub(crate) doc: Vec<String>,
    pub(crate) fields: Vec<FieldModel>,
}

/// Everything generated for one interface.
#[derive(Debug, Clone)]
pub(crate) struct InterfaceModel {
    pub(crate) name: String,
    pub(crate) doc: Vec<String>,
    pub(crate) types: Vec<TypeModel>,
    pub(crate) methods: Vec<MethodModel>,
    pub(crate) errors: Vec<ErrorModel>,
    /// The catch-all variant of the error enum (`Other`).
    pub(crate) other_error: String,
}

impl InterfaceModel {
    /// True when some field uses this adapter.
    pub(crate) fn uses(&self, adapter: Adapter) -> bool {
        let in_types = self.types.iter().any(|t| match t {
            TypeModel::Struct(s) => s.fields.iter().any(|f| f.adapter == adapter),
            TypeModel::Enum(_) => false,
        });
        in_types
            || self
                .errors
                .iter()
                .any(|e| e.fields.iter().any(|f| f.adapter == adapter))
    }
}

/// A naming conflict or unsupported construct, described for the user.
pub(crate) type ModelError = String;

struct Lowering<'a> {
    interface: &'a Interface,
    types: Vec<TypeModel>,
}

/// Lowers a parsed interface. `streaming` and `upgrade` override the streaming and upgrade
/// modes of methods by IDL name; otherwise they come from systemd's doc comment markers.
pub(crate) fn lower(
    interface: &Interface,
    streaming: &HashMap<String, Streaming>,
    upgrade: &HashMap<String, Upgrade>,
) -> Result<InterfaceModel, ModelError> {
    let mut lowering = Lowering {
        interface,
        types: Vec::new(),
    };
    let mut methods = Vec::new();
    let mut errors = Vec::new();
    for member in &interface.members {
        match member {
            Member::Type(def) => match &def.ty {
                Type::Struct(fields) => lowering.add_struct(&def.name, def.doc.clone(), fields)?,
                Type::Enum(variants) => {
                    let variants = variants.iter().map(|v| (v.name.clone(), v.doc.clone()));
                    lowering.add_enum(&def.name, def.doc.clone(), variants.collect())?;
                }
                other => {
                    return Err(format!(
                        "type {} is neither a struct nor an enum: {other:?}",
                        def.name
                    ));
                }
            },
            Member::Method(method) => {
                let input = format!("{}Input", method.name);
                let output = format!("{}Output", method.name);
                let input_doc = vec![format!("The input parameters of `{}`.", method.name)];
                let output_doc = vec![format!("The output parameters of `{}`.", method.name)];
                lowering.add_struct(&input, input_doc, &method.input)?;
                lowering.add_struct(&output, output_doc, &method.output)?;
                let input_fields = match lowering.types.iter().find(|t| t.name() == input) {
                    Some(TypeModel::Struct(s)) => s.fields.clone(),
                    _ => Vec::new(),
                };
                let mode = streaming.get(&method.name).copied().unwrap_or_else(|| {
                    if has_marker(&method.doc, "[Requires 'more' flag]") {
                        Streaming::Requires
                    } else if has_marker(&method.doc, "[Supports 'more' flag]") {
                        Streaming::Supports
                    } else {
                        Streaming::No
                    }
                });
                let upgrade_mode = upgrade.get(&method.name).copied().unwrap_or_else(|| {
                    if has_marker(&method.doc, "[Requires 'upgrade' flag]") {
                        Upgrade::Requires
                    } else if has_marker(&method.doc, "[Supports 'upgrade' flag]") {
                        Upgrade::Supports
                    } else {
                        Upgrade::No
                    }
                });
                if mode != Streaming::No && upgrade_mode != Upgrade::No {
                    return Err(format!(
                        "method {} both streams replies (`more`) and upgrades the connection \
                         (`upgrade`); a method can do only one of them",
                        method.name
                    ));
                }
                let mut ident = snake_ident(&method.name);
                if RESERVED_FN_NAMES.contains(&unraw(&ident)) {
                    ident = format!("{}_method", unraw(&ident));
                }
                methods.push(MethodModel {
                    name: method.name.clone(),
                    ident,
                    doc: method.doc.clone(),
                    input,
                    output,
                    input_fields,
                    streaming: mode,
                    upgrade: upgrade_mode,
                });
            }
            Member::Error(error) => {
                let fields = lowering.fields(&error.name, &error.parameters)?;
                errors.push(ErrorModel {
                    name: error.name.clone(),
                    doc: error.doc.clone(),
                    fields,
                });
            }
        }
    }
    for name in streaming.keys() {
        if interface.method(name).is_none() {
            return Err(format!(
                "a streaming mode is configured for {name}, which the interface does not declare"
            ));
        }
    }
    for name in upgrade.keys() {
        if interface.method(name).is_none() {
            return Err(format!(
                "an upgrade mode is configured for {name}, which the interface does not declare"
            ));
        }
    }
    let mut types = lowering.types;
    check_type_names(&types)?;
    check_method_names(&methods)?;
    box_cycles(&mut types);
    // Method input fields are copies; give them the boxing decisions too.
    for method in &mut methods {
        if let Some(TypeModel::Struct(s)) = types.iter().find(|t| t.name() == method.input) {
            method.input_fields = s.fields.clone();
        }
    }
    let error_names: BTreeSet<&str> = errors.iter().map(|e| e.name.as_str()).collect();
    let other_error = unused_name("Other", &error_names);
    Ok(InterfaceModel {
        name: interface.name.clone(),
        doc: interface.doc.clone(),
        types,
        methods,
        errors,
        other_error,
    })
}

fn has_marker(doc: &[String], marker: &str) -> bool {
    doc.iter().any(|line| line.contains(marker))
}

/// `base`, or `base` with a suffix, whichever is not taken.
fn unused_name(base: &str, taken: &BTreeSet<&str>) -> String {
    let mut candidate = base.to_owned();
    let mut n = 1;
    while taken.contains(candidate.as_str()) {
        candidate = if n == 1 {
            format!("{base}Value")
        } else {
            format!("{base}Value{n}")
        };
        n += 1;
    }
    candidate
}

impl Lowering<'_> {
    fn add_struct(
        &mut self,
        name: &str,
        doc: Vec<String>,
        fields: &[Field],
    ) -> Result<(), ModelError> {
        // Reserve the slot first so the struct comes before its inline types.
        let index = self.types.len();
        self.types.push(TypeModel::Struct(StructModel {
            name: name.to_owned(),
            doc,
            fields: Vec::new(),
        }));
        let lowered = self.fields(name, fields)?;
        if let TypeModel::Struct(s) = &mut self.types[index] {
            s.fields = lowered;
        }
        Ok(())
    }

    fn add_enum(
        &mut self,
        name: &str,
        doc: Vec<String>,
        variants: Vec<(String, Vec<String>)>,
    ) -> Result<(), ModelError> {
        let mut seen = BTreeMap::new();
        let mut models = Vec::new();
        for (wire, doc) in variants {
            let ident = camel_ident(&wire);
            if let Some(previous) = seen.insert(ident.clone(), wire.clone()) {
                return Err(format!(
                    "enum {name}: values {previous:?} and {wire:?} both become the Rust variant {ident}"
                ));
            }
            models.push(VariantModel { wire, ident, doc });
        }
        let taken: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
        let unknown = unused_name("Unknown", &taken);
        self.types.push(TypeModel::Enum(EnumModel {
            name: name.to_owned(),
            doc,
            variants: models,
            unknown,
        }));
        Ok(())
    }

    fn fields(&mut self, parent: &str, fields: &[Field]) -> Result<Vec<FieldModel>, ModelError> {
        let mut seen = BTreeMap::new();
        let mut out = Vec::new();
        for field in fields {
            let ident = snake_ident(&field.name);
            if let Some(previous) = seen.insert(ident.clone(), field.name.clone()) {
                return Err(format!(
                    "{parent}: fields {previous:?} and {:?} both become the Rust field {ident}",
                    field.name
                ));
            }
            let (ty, adapter) = match &field.ty {
                t if is_set(t) => (RustType::Set, Adapter::Set),
                Type::Nullable(inner) if is_set(inner) => (
                    RustType::Option(Box::new(RustType::Set)),
                    Adapter::OptionSet,
                ),
                t => {
                    let prefix = format!("{parent}{}", camel_ident(unraw(&field.name)));
                    (
                        self.lower_type(t, &prefix, parent, &field.name)?,
                        Adapter::None,
                    )
                }
            };
            out.push(FieldModel {
                wire: field.name.clone(),
                ident,
                doc: field.doc.clone(),
                ty,
                adapter,
            });
        }
        Ok(out)
    }

    /// Lowers a type expression; inline structs and enums become types named `prefix`.
    fn lower_type(
        &mut self,
        ty: &Type,
        prefix: &str,
        parent: &str,
        field: &str,
    ) -> Result<RustType, ModelError> {
        Ok(match ty {
            Type::Bool => RustType::Bool,
            Type::Int => RustType::Int,
            Type::Float => RustType::Float,
            Type::String => RustType::String,
            Type::Object | Type::Any => RustType::Value,
            Type::Named(name) => {
                if self.interface.type_def(name).is_none() {
                    return Err(format!(
                        "{parent}.{field} refers to the undeclared type {name}"
                    ));
                }
                RustType::Named(name.clone())
            }
            Type::Struct(fields) => {
                let doc = vec![format!("The inline type of `{parent}.{field}`.")];
                self.add_struct(prefix, doc, fields)?;
                RustType::Named(prefix.to_owned())
            }
            Type::Enum(variants) => {
                let doc = vec![format!("The inline enum of `{parent}.{field}`.")];
                let variants = variants
                    .iter()
                    .map(|v| (v.name.clone(), v.doc.clone()))
                    .collect();
                self.add_enum(prefix, doc, variants)?;
                RustType::Named(prefix.to_owned())
            }
            Type::Array(inner) => {
                RustType::Vec(Box::new(self.lower_type(inner, prefix, parent, field)?))
            }
            Type::Map(inner) => {
                RustType::Map(Box::new(self.lower_type(inner, prefix, parent, field)?))
            }
            Type::Nullable(inner) => {
                RustType::Option(Box::new(self.lower_type(inner, prefix, parent, field)?))
            }
        })
    }
}

fn is_set(ty: &Type) -> bool {
    matches!(ty, Type::Map(inner) if matches!(&**inner, Type::Struct(fields) if fields.is_empty()))
}

fn check_type_names(types: &[TypeModel]) -> Result<(), ModelError> {
    let mut seen = BTreeSet::new();
    for ty in types {
        let name = ty.name();
        if RESERVED_TYPE_NAMES.contains(&name) {
            return Err(format!(
                "the type name {name} is used by the generated code; rename the type in the IDL"
            ));
        }
        if !seen.insert(name) {
            return Err(format!(
                "two types are named {name} (an inline type is named after its path, e.g. \
                 `<Type><Field>` or `<Method>Input<Field>`, and a method's parameters are \
                 `<Method>Input`/`<Method>Output`); rename one in the IDL"
            ));
        }
    }
    Ok(())
}

fn check_method_names(methods: &[MethodModel]) -> Result<(), ModelError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for reserved in RESERVED_FN_NAMES {
        seen.insert((*reserved).to_owned(), "(generated)");
    }
    for method in methods {
        let base = unraw(&method.ident);
        let mut names = vec![method.ident.clone()];
        if method.upgrade != Upgrade::Requires {
            names.push(format!("{base}_oneway"));
        }
        if method.streaming == Streaming::Supports {
            names.push(format!("{base}_more"));
        }
        if method.upgrade == Upgrade::Supports {
            names.push(format!("{base}_upgrade"));
        }
        for name in names {
            if let Some(previous) = seen.insert(name.clone(), &method.name) {
                return Err(format!(
                    "method {} needs the Rust function {name}, already used by {previous}",
                    method.name
                ));
            }
        }
    }
    Ok(())
}

/// Boxes fields that would make a struct contain itself (through `Option` or directly).
fn box_cycles(types: &mut [TypeModel]) {
    let direct: HashMap<String, Vec<String>> = types
        .iter()
        .filter_map(|t| match t {
            TypeModel::Struct(s) => Some((
                s.name.clone(),
                s.fields
                    .iter()
                    .filter_map(|f| direct_target(&f.ty).map(str::to_owned))
                    .collect(),
            )),
            TypeModel::Enum(_) => None,
        })
        .collect();
    let reaches = |from: &str, to: &str| -> bool {
        let mut stack = vec![from.to_owned()];
        let mut visited = BTreeSet::new();
        while let Some(next) = stack.pop() {
            if next == to {
                return true;
            }
            if visited.insert(next.clone()) {
                stack.extend(direct.get(&next).into_iter().flatten().cloned());
            }
        }
        false
    };
    for ty in types.iter_mut() {
        let TypeModel::Struct(s) = ty else { continue };
        for field in &mut s.fields {
            let Some(target) = direct_target(&field.ty) else {
                continue;
            };
            if reaches(target, &s.name) {
                field.ty = match std::mem::replace(&mut field.ty, RustType::Bool) {
                    RustType::Option(inner) => RustType::Option(Box::new(RustType::Boxed(inner))),
                    other => RustType::Boxed(Box::new(other)),
                };
            }
        }
    }
}

/// The generated type a field contains by value (not behind a `Vec` or map).
fn direct_target(ty: &RustType) -> Option<&str> {
    match ty {
        RustType::Named(name) => Some(name),
        RustType::Option(inner) => direct_target(inner),
        _ => None,
    }
}
