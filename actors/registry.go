package actors

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// registry maps wire names to Go types for messages and replies that cross
// nodes. It is global, like encoding/gob's, because message types are declared
// at package level by the packages that define actors.
var registry = struct {
	mu     sync.RWMutex
	byName map[string]reflect.Type // guarded by mu
	byType map[reflect.Type]string // guarded by mu
}{
	byName: make(map[string]reflect.Type),
	byType: make(map[reflect.Type]string),
}

func init() {
	// Plain values are common replies (counts, IDs, flags); registering them
	// here saves every package from doing it.
	RegisterMessage("string", "")
	RegisterMessage("bool", false)
	RegisterMessage("int", 0)
	RegisterMessage("int64", int64(0))
	RegisterMessage("uint64", uint64(0))
	RegisterMessage("float64", float64(0))
	RegisterMessage("bytes", []byte(nil))
}

// RegisterMessage records name as the wire name of prototype's type, so that
// values of that type can be sent to, and returned by, actors on other nodes.
// The type is what arrives: register a pointer type to receive pointers. A
// message is msgpack-encoded, so its exported fields are what crosses.
// Registering the same name and type again is a no-op; reusing a name or a
// type for something else panics, as it is a programming error.
func RegisterMessage(name string, prototype any) {
	if name == "" || prototype == nil {
		panic("actors: RegisterMessage needs a name and a non-nil prototype")
	}
	typ := reflect.TypeOf(prototype)
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if old, ok := registry.byName[name]; ok {
		if old == typ {
			return
		}
		panic(fmt.Sprintf("actors: message name %q registered for %s and %s", name, old, typ))
	}
	if old, ok := registry.byType[typ]; ok {
		panic(fmt.Sprintf("actors: type %s registered as %q and %q", typ, old, name))
	}
	registry.byName[name] = typ
	registry.byType[typ] = name
}

// messageName returns the wire name of v's type; "" for nil.
func messageName(v any) (string, error) {
	if v == nil {
		return "", nil
	}
	typ := reflect.TypeOf(v)
	registry.mu.RLock()
	name, ok := registry.byType[typ]
	registry.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrUnregisteredMessage, typ)
	}
	return name, nil
}

// decodeMessage decodes body as the type registered under name; nil for "".
func decodeMessage(name string, body []byte) (any, error) {
	if name == "" {
		return nil, nil
	}
	registry.mu.RLock()
	typ, ok := registry.byName[name]
	registry.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: wire name %q", ErrUnregisteredMessage, name)
	}
	var ptr reflect.Value
	if typ.Kind() == reflect.Pointer {
		ptr = reflect.New(typ.Elem())
	} else {
		ptr = reflect.New(typ)
	}
	// A fresh decoder, not msgpack.Unmarshal's pooled one, for the reason
	// structs.Decode gives: a pooled decoder keeps the buffer a lying string
	// length grew.
	if err := msgpack.NewDecoder(bytes.NewReader(body)).Decode(ptr.Interface()); err != nil {
		return nil, fmt.Errorf("actors: decode %q message: %w", name, err)
	}
	if typ.Kind() == reflect.Pointer {
		return ptr.Interface(), nil
	}
	return ptr.Elem().Interface(), nil
}
